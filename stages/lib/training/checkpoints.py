"""Resumable training: a work folder per fingerprint, regular checkpoints, the best model on disk.

DVC deletes a stage's outputs before it runs, so checkpoints live beside them in
``models/.train-work/<fingerprint>/``, which neither git nor DVC tracks. The
fingerprint covers everything the stage reads (params that change the result,
data, base model, code, library versions): a rerun after a crash resumes only
from checkpoints of the very same run, and checkpoints of any other are
discarded.

A checkpoint holds only the weights training changes (``requires_grad``), with
the optimizer, scheduler, RNG and data position: everything else (a frozen
token-embedding matrix is 80% of multilingual-e5-small) is the base model's,
which the resumed run rebuilds identically from the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from stages.lib.common.files import file_digest
from stages.lib.common.params import Params
from stages.lib.models.hardware import Hardware

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# Written last by the transformers Trainer: a checkpoint without it was cut short.
COMPLETE_MARKER = "trainer_state.json"
BEST_DIR = "best"
BEST_RECORD = "best.json"
TRAINED_WEIGHTS = "trained_weights.safetensors"

log = logging.getLogger(__name__)


def fingerprint(settings: dict[str, Any], files: Iterable[Path], folders: Iterable[Path]) -> str:
    """A short hash of the settings, the bytes of ``files`` and every file under ``folders``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        digest.update(f"\0{path.as_posix()}\0{file_digest(path)}".encode())
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f"\0{path.relative_to(folder).as_posix()}\0{file_digest(path)}".encode())
    return digest.hexdigest()[:16]


def fingerprint_settings(params: Params, hardware: Hardware) -> dict:
    import sentence_transformers
    import torch
    import transformers

    # Knobs that change how training runs but not its result stay out, so that
    # e.g. a different checkpoint interval can still resume; so does the ensembling
    # with the base model, which only reads the finished run.
    train = params.train.model_dump(exclude={"processes", "checkpoint_fraction", "checkpoint_minutes", "gradient_checkpointing",
                                             "wise_ft_alphas"})
    return {
        "train": train,
        "max_seq_length": params.model.max_seq_length,
        "device": hardware.device,
        "precision": hardware.precision,
        "versions": [torch.__version__, transformers.__version__, sentence_transformers.__version__],
    }


def prepare_work_dir(root: Path, key: str) -> tuple[Path, list[str]]:
    """``root/key``, created; folders of other fingerprints are deleted. Returns (folder, discarded names)."""
    root.mkdir(parents=True, exist_ok=True)
    discarded = []
    for other in sorted(root.iterdir()):
        if other.name == key:
            continue
        if other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
        else:
            other.unlink(missing_ok=True)
        discarded.append(other.name)
    work = root / key
    work.mkdir(exist_ok=True)
    return work, discarded


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def latest_complete_checkpoint(work: Path) -> Path | None:
    """The checkpoint with the highest step whose state file was written (the last thing saved)."""
    complete = [p for p in work.glob("checkpoint-*") if checkpoint_step(p) is not None and (p / COMPLETE_MARKER).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def remove_incomplete_checkpoints(work: Path) -> list[Path]:
    removed = [p for p in work.glob("checkpoint-*") if p.is_dir() and not (p / COMPLETE_MARKER).is_file()]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def resume_point(root: Path, key: str, writer: bool) -> tuple[Path, Path | None]:
    """This run's work folder ``root/key`` (rank 0 discards the others) and its latest complete checkpoint."""
    if not writer:
        return root / key, latest_complete_checkpoint(root / key)
    work, discarded = prepare_work_dir(root, key)
    if discarded:
        log.info(f"discarded checkpoints of earlier runs with other inputs: {', '.join(discarded)}")
    remove_incomplete_checkpoints(work)
    resume = latest_complete_checkpoint(work)
    if resume is not None:
        log.info(f"resuming from {resume} (step {checkpoint_step(resume)})")
    return work, resume


def save_steps(total_steps: int, fraction: float) -> int:
    """Checkpoint interval in steps: every ``fraction`` of the run, so a kill loses at most that share."""
    return max(1, int(total_steps * fraction))


def save_trained_weights(model, folder: Path) -> int:
    """Write the parameters training updates (``requires_grad``) to ``folder``; returns their count."""
    from safetensors.torch import save_file

    tensors = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / TRAINED_WEIGHTS))
    return sum(t.numel() for t in tensors.values())


def load_trained_weights(model, folder: Path) -> bool:
    """Copy a checkpoint's trained parameters into ``model`` (rebuilt from the same base); False without that file."""
    import torch
    from safetensors.torch import load_file

    path = folder / TRAINED_WEIGHTS
    if not path.is_file():
        return False
    tensors = load_file(str(path))
    parameters = dict(model.named_parameters())
    trainable = {name for name, p in parameters.items() if p.requires_grad}
    if set(tensors) != trainable:  # the fingerprint covers what decides this: only a hand-edited folder gets here
        raise RuntimeError(f"{path} holds other parameters than this model trains: delete {folder.parent} and rerun.")
    with torch.no_grad():
        for name, tensor in tensors.items():
            parameters[name].copy_(tensor)
    return True


def read_best(work: Path) -> dict[str, Any] | None:
    record = work / BEST_RECORD
    if not record.is_file():
        return None
    try:
        best = json.loads(record.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    # A best step without its saved model (cut short between the two writes) is no best step.
    return best if best.get("step") is None or (work / BEST_DIR).is_dir() else None


class CheckpointSchedule(TrainerCallback):
    """Add time-based checkpoints to the Trainer's step-based ones, and skip the one at the last step.

    A checkpoint is due when ``interval_s`` has passed since the last one (long
    runs). With several processes the decision must be the same on all of them
    (a save is collective), so rank 0's clock decides and is broadcast.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last_save = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            # The Trainer checkpoints the last step too; the stage writes the model right after,
            # so that save would only cost time.
            control.should_save = False
            return control
        due = time.monotonic() - self.last_save >= self.interval_s
        if args.world_size > 1:
            import torch
            import torch.distributed as dist

            flag = torch.tensor([1 if due else 0], dtype=torch.int32, device=args.device)
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
        if due:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()


class CheckpointCost(TrainerCallback):
    """The checkpoints a run wrote and the seconds they took: the cost of being resumable, reported in the metrics.

    The Trainer saves a checkpoint after the step's callbacks (``on_step_end``, then ``on_log`` and ``on_evaluate``
    when the step logs or validates) and calls ``on_save`` when it is written: a save's time is from the last of
    those to ``on_save``. Registered after every callback that works in those events, so their work is not counted.
    """

    def __init__(self) -> None:
        self.saved = 0
        self.seconds = 0.0
        self._mark = time.perf_counter()

    def _start(self) -> None:
        self._mark = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self._start()

    def on_log(self, args, state, control, **kwargs):
        self._start()

    def on_evaluate(self, args, state, control, **kwargs):
        self._start()

    def on_save(self, args, state, control, **kwargs):
        self.saved += 1
        self.seconds += time.perf_counter() - self._mark


class BestModelKeeper(TrainerCallback):
    """Keep the best model by a validation metric on disk (rank 0 writes), so it survives a crash.

    Independent of checkpointing: the Trainer's own ``load_best_model_at_end``
    would tie every resume checkpoint to a validation pass.

    ``choose=False``: the validation questions are not fit to choose on (synthetic ones, when no golden set is
    about the corpus): their scores are only recorded, and the run keeps its final step (``keep_final``), the
    end of the learning-rate schedule, as it would with no validation at all.
    """

    def __init__(self, work: Path, metric: str, model, is_writer: bool, choose: bool = True) -> None:
        self.work, self.metric, self.model, self.is_writer, self.choose = work, metric, model, is_writer, choose
        best = read_best(work)
        self.best_score = best["score"] if best else None
        self.best_step = best["step"] if best else None
        # Step -> score of every validation pass (step 0: the base model); kept across a resume.
        self.scores: dict[int, float] = {int(k): v for k, v in (best or {}).get("scores", {}).items()}

    def keep_final(self, step: int) -> None:
        """After a run that does not choose: the final step is the kept one (the stage saves the model in memory)."""
        self.best_step, self.best_score = step, self.scores.get(step)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        score = (metrics or {}).get(self.metric)
        if score is None:
            return
        self.scores.setdefault(state.global_step, score)
        if not self.choose:
            self._record()
            return
        if self.best_score is not None and score <= self.best_score:
            # Ties keep the earlier step: a later one must be better, not as good (step 0 wins ties).
            self._record()
            return
        self.best_score, self.best_step = score, state.global_step
        if self.is_writer:
            staging = self.work / (BEST_DIR + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            self.model.save(str(staging))
            shutil.rmtree(self.work / BEST_DIR, ignore_errors=True)
            staging.rename(self.work / BEST_DIR)
            self._record()

    def _record(self) -> None:
        if self.is_writer and (self.best_step is not None or not self.choose):
            record = {"step": self.best_step, "score": self.best_score, "scores": self.scores}
            (self.work / BEST_RECORD).write_text(json.dumps(record), encoding="utf-8")
