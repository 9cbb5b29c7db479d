"""Stage ``train``: fine-tune ``models/base`` on the training questions -> ``models/finetuned/``.

Runs where the user's hardware is: on a GPU (mixed precision) when there is
one, on several GPUs through ``torchrun`` (``train.processes``), on the CPU
otherwise. Checkpoints go to ``models/.train-work/<fingerprint>/``, so a rerun
after a crash or ``kill -9`` resumes instead of starting over. Model selection
is by NDCG@10 on the best labelled val there is (golden val when a golden set
is about this corpus, else a bounded sample of the synthetic val split), and
the base model itself (step 0) is a candidate: a fine-tune that does not beat
it is not kept. The loss and validation curves go to ``metrics/train_curves/``
for ``dvc plots``. Queries and passages are encoded after the model's prompts
(``model.query_prompt`` / ``model.document_prompt``), which are saved with the
model. If the base tokenizer maps too much of the corpus to ``[UNK]``, the
vocabulary is extended first and the extended tokenizer is saved with the model.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.cores import cpu_threads
from stages.lib.common.errors import EXIT_INTERRUPTED, UserError, run_stage
from stages.lib.common.files import replacing_directory, write_json
from stages.lib.common.params import Params, load_params
from stages.lib.common.progress import quiet_library_bars
from stages.lib.documents.chunk_file import CHUNKS_FILE, load_chunks
from stages.lib.models.hardware import Hardware, resolve_hardware
from stages.lib.models.prompts import Prompts, resolve_prompts, save_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.training.checkpoints import (
    checkpoint_step,
    fingerprint,
    latest_complete_checkpoint,
    prepare_work_dir,
    remove_incomplete_checkpoints,
)
from stages.lib.training.distributed import is_launched_worker, launch_workers, local_rank, world_rank

BASE_DIR = Path("models/base")
OUTPUT_DIR = Path("models/finetuned")
WORK_ROOT = Path("models/.train-work")  # checkpoints; ignored by git and DVC
QUESTIONS_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/train.json")
CURVES_DIR = Path("metrics/train_curves")
VAL_PREFIX = "eval_val_cosine_"
VAL_METRIC = VAL_PREFIX + "ndcg@10"
# The pipeline's code is part of the checkpoint fingerprint: all of it, so no module the stage
# reads (directly or not) can change under a resumed run; an unrelated edit costs only a restart.
CODE_DIR = Path("stages")


@run_stage("train")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_bars()
    params = load_params()

    # 1. Hardware: resolved here, recorded in the metrics, never written into params.
    hardware = resolve_hardware(params.compute.device, params.compute.precision, params.train.processes)
    _check_batch_split(params.train.batch_size, hardware.processes)
    if hardware.processes > 1 and not is_launched_worker():
        print(f"[train] launching {hardware.processes} data-parallel processes on {hardware.device} through torchrun",
              flush=True)
        code = launch_workers("stages.train", hardware.processes)
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code:
            sys.exit(code)
        return
    train(params, hardware)


def train(params: Params, hardware: Hardware) -> None:
    """One training process (of ``hardware.processes``); rank 0 alone writes files."""
    import torch
    from transformers import set_seed

    from stages.lib.training.trainer import build_trainer

    writer = world_rank() == 0
    say = print if writer else (lambda *args, **kwargs: None)
    _quiet_other_ranks(writer)
    set_seed(params.train.seed)
    if hardware.device == "cpu":
        torch.set_num_threads(cpu_threads())

    # 1. Build: data, model (vocabulary extended if needed), the checkpoint to resume from.
    work, resume = _resume_point(params, hardware, writer, say)
    built = build_inputs(params, hardware, say)
    say(f"[train] [UNK] rate {built.coverage_before:.1%} -> {built.coverage_after:.1%} ({built.tokens_added} tokens added); "
        f"{built.n_pairs} training pairs (of {built.n_pairs_available}), validation on {built.val_queries} queries "
        f"x {built.val_corpus} chunks; {hardware.device}, {hardware.precision}, {hardware.processes} process(es)")
    say(f"[train] {built.prompts.describe()}; model selection on {built.val_source}, the base model (step 0) included")
    trainer, keeper = build_trainer(built.model, built.train_data, built.evaluator, params.train, hardware, work,
                                    vocabulary_extended=built.tokens_added > 0, val_metric=VAL_METRIC, is_writer=writer,
                                    prompts=built.prompts)

    # 2. Run.
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except KeyboardInterrupt:
        last = latest_complete_checkpoint(work)
        where = f"the checkpoint {last}" if last else "the start (no checkpoint was written yet)"
        say(f"\n[train] interrupted at step {trainer.state.global_step}; `dvc repro` resumes from {where}.")
        raise
    train_seconds = time.perf_counter() - started
    if trainer.state.global_step == 0:
        raise UserError("Training took no step: the batch sampler could not fill one batch of 'train.batch_size' "
                        f"({params.train.batch_size}) from {built.n_pairs} pairs. Lower 'train.batch_size'.")

    # 3. Report (rank 0): the best model by validation score, the curves, the metrics; then drop the checkpoints.
    if writer:
        _save_model(trainer.model, keeper, work)
        loss_rows = _write_curves(trainer.state.log_history)
        resumed_from = checkpoint_step(resume) if resume else 0
        write_json(METRICS_FILE, _metrics(params, hardware, built, trainer, keeper, loss_rows, resumed_from, train_seconds))
        shutil.rmtree(work, ignore_errors=True)
        print(f"[train] {built.n_pairs} pairs x {params.train.epochs} epochs, {trainer.state.global_step} steps in "
              f"{train_seconds:.0f}s; best {built.val_source} NDCG@10 {keeper.best_score or float('nan'):.3f} at step "
              f"{keeper.best_step}")
        if keeper.best_step == 0:
            print(f"[train] no fine-tuned step beat the base model on {built.val_source}: {OUTPUT_DIR} is the base "
                  "model itself (with its prompts). Fine-tuning did not help with this data and recipe.")


def _resume_point(params: Params, hardware: Hardware, writer: bool, say) -> tuple[Path, Path | None]:
    """This run's work folder (by fingerprint; rank 0 discards the others) and its latest complete checkpoint."""
    for path in (QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json", CHUNKS_FILE):
        if not path.is_file():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    if not BASE_DIR.is_dir():
        raise UserError(f"{BASE_DIR} is missing: run `dvc repro base_model` first.")
    key = fingerprint(
        _fingerprint_settings(params, hardware),
        files=[CHUNKS_FILE, QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json",
               *sorted(CODE_DIR.rglob("*.py"))],
        folders=[BASE_DIR],
    )
    if not writer:
        return WORK_ROOT / key, latest_complete_checkpoint(WORK_ROOT / key)
    work, discarded = prepare_work_dir(WORK_ROOT, key)
    if discarded:
        say(f"[train] discarded checkpoints of earlier runs with other inputs: {', '.join(discarded)}")
    remove_incomplete_checkpoints(work)
    resume = latest_complete_checkpoint(work)
    if resume is not None:
        say(f"[train] resuming from {resume} (step {checkpoint_step(resume)})")
    return work, resume


def _metrics(params: Params, hardware: Hardware, built: Built, trainer, keeper, loss_rows: list[dict],
             resumed_from: int, train_seconds: float) -> dict:
    steps_this_run = trainer.state.global_step - resumed_from
    return {
        "device": hardware.device,
        "precision": hardware.precision,
        "processes": hardware.processes,
        "unk_rate_before": round(built.coverage_before, 4),
        "unk_rate_after": round(built.coverage_after, 4),
        "tokens_added": built.tokens_added,
        "token_embeddings_frozen": int(built.embeddings_frozen),
        "train_pairs": built.n_pairs,
        "train_pairs_available": built.n_pairs_available,
        "val_queries": built.val_queries,
        "val_corpus": built.val_corpus,
        "learning_rate": params.train.learning_rate,
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_from,
        "best_step": keeper.best_step or 0,
        # Model selection: where, the base model's own score there (step 0), and whether it won.
        "selected_on": built.val_source,
        "val_ndcg@10_base": round(keeper.scores.get(0, 0.0), 4),
        "base_model_selected": int(keeper.best_step == 0),
        # Over the whole run, resumed or not (the Trainer's own figure covers only this process's steps).
        "train_loss": round(sum(r["loss"] for r in loss_rows) / len(loss_rows), 4) if loss_rows else 0.0,
        "best_val_ndcg@10": round(keeper.best_score, 4) if keeper.best_score is not None else 0.0,
        "train_seconds": round(train_seconds, 1),
        "checkpoints_saved": trainer.checkpoints_saved,
        "checkpoint_seconds": round(trainer.checkpoint_seconds, 1),
        "pairs_per_second": round(steps_this_run * params.train.batch_size / train_seconds, 2) if train_seconds else 0.0,
    }


def _quiet_other_ranks(writer: bool) -> None:
    import warnings

    # Deprecation notices from inside accelerate / sentence-transformers: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(accelerate|sentence_transformers|torch)\.")
    if not writer:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()  # rank 0 speaks for all processes


def _check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UserError(
            f"params.yaml key 'train.batch_size' is {batch_size}, which {processes} processes cannot split evenly "
            f"('train.processes' resolved to {processes}). train.batch_size is the global batch: make it a multiple "
            "of the number of processes."
        )


def _fingerprint_settings(params: Params, hardware: Hardware) -> dict:
    import sentence_transformers
    import torch
    import transformers

    # Knobs that change how training runs but not its result stay out, so that
    # e.g. a different checkpoint interval can still resume.
    train = params.train.model_dump(exclude={"processes", "checkpoint_fraction", "checkpoint_minutes", "gradient_checkpointing"})
    return {
        "train": train,
        "max_seq_length": params.model.max_seq_length,
        "device": hardware.device,
        "precision": hardware.precision,
        "versions": [torch.__version__, transformers.__version__, sentence_transformers.__version__],
    }


@dataclass
class Built:
    model: object
    train_data: object
    evaluator: object | None
    n_pairs: int
    n_pairs_available: int
    val_queries: int
    val_corpus: int
    coverage_before: float
    coverage_after: float
    tokens_added: int
    embeddings_frozen: bool
    prompts: Prompts
    val_source: str  # "golden val" or "synthetic val"


def build_inputs(params: Params, hardware: Hardware, say=print) -> Built:
    """The model (on its device, vocabulary extended if needed), the training pairs and the bounded val evaluator."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from stages.lib.retrieval.eval_sample import bounded_dataset
    from stages.lib.retrieval.question_sets import golden_val
    from stages.lib.training.pairs import duplicate_free_shortfall, sample_pairs, training_pairs
    from stages.lib.training.trainer import ir_evaluator
    from stages.lib.training.vocab import extend_vocabulary, measure_coverage

    p = params.train
    train_set, val_set = QADataset.load(QUESTIONS_DIR / "train.json"), QADataset.load(QUESTIONS_DIR / "val.json")
    if not train_set.queries:
        raise UserError(f"{QUESTIONS_DIR / 'train.json'} has no queries: check 'questions.train_styles'.")
    model_device = f"cuda:{local_rank()}" if hardware.device == "cuda" else hardware.device
    model = SentenceTransformer(str(BASE_DIR), device=model_device)
    model.max_seq_length = params.model.max_seq_length
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, BASE_DIR)
    save_prompts(model, prompts)  # every save (best model, checkpoints) carries them

    chunks = load_chunks()
    texts = [chunk.text for chunk in chunks] + list(train_set.queries.values())
    before = measure_coverage(model.tokenizer, texts)
    added = extend_vocabulary(model, list(before.missing)) if p.extend_vocab and before.unknown_rate > p.unk_threshold else 0
    after = measure_coverage(model.tokenizer, texts) if added else before
    frozen = p.freeze_token_embeddings is True or (p.freeze_token_embeddings == "auto" and not added)
    if frozen:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)

    all_anchors, all_positives = training_pairs(train_set, p.ict_mask_probability, p.seed)
    anchors, positives = sample_pairs(all_anchors, all_positives, p.max_pairs, p.seed)
    if len(anchors) < p.batch_size:
        raise UserError(
            f"Only {len(anchors)} training pairs, fewer than params.yaml key 'train.batch_size' ({p.batch_size}): "
            "lower the batch size, raise 'train.max_pairs', or add documents/questions."
        )
    columns = {"anchor": anchors, "positive": positives}
    if p.hard_negatives:
        columns["negative"] = _hard_negatives(model, train_set, anchors, positives, p, prompts, say)
    shortfall = duplicate_free_shortfall(columns, p.batch_size) if p.duplicate_free_batches else None
    if shortfall:
        distinct, needed = shortfall
        raise UserError(
            f"params.yaml key 'train.batch_size' is {p.batch_size}: a duplicate-free batch of that size needs {needed} "
            f"different passages ({len(columns) - 1} per pair), but the training pairs hold only {distinct}. Lower "
            f"'train.batch_size' to at most {distinct // (len(columns) - 1)}"
            + (", or set 'train.hard_negatives' to false" if p.hard_negatives else "")
            + ", or add documents."
        )
    # The best labelled val there is: questions people wrote, else the generator's val split.
    golden = golden_val(chunks, params.evaluate.golden_sets)
    val_source, selection_set = ("golden val", golden) if golden is not None else ("synthetic val", val_set)
    val = (bounded_dataset(selection_set, p.max_val_queries, p.max_val_corpus, f"train.val:{p.seed}")
           if selection_set.queries else None)
    return Built(
        model=model,
        train_data=Dataset.from_dict(columns),
        evaluator=ir_evaluator(val, "val", batch_size=64, prompts=prompts) if val else None,
        n_pairs=len(anchors),
        n_pairs_available=len(all_anchors),
        val_queries=len(val.queries) if val else 0,
        val_corpus=len(val.corpus) if val else 0,
        coverage_before=before.unknown_rate,
        coverage_after=after.unknown_rate,
        tokens_added=added,
        embeddings_frozen=frozen,
        prompts=prompts,
        val_source=val_source if val else "none",
    )


def _hard_negatives(model, train_set: QADataset, anchors: list[str], positives: list[str], p, prompts: Prompts,
                    say) -> list[str]:
    """One mined negative passage per training pair, from the training chunks only (never a val or test passage)."""
    from stages.lib.training.hard_negatives import MiningWindow, document_neighbours, mine_bm25_negatives, mine_model_negatives

    positives_by_query: dict[str, set[str]] = {}
    for _, query, chunk_id in train_set.pairs():
        positives_by_query.setdefault(query, set()).add(chunk_id)
    training_passages = {cid: train_set.corpus[cid] for ids in positives_by_query.values() for cid in sorted(ids)}
    neighbours = document_neighbours(load_chunks())
    if p.hard_negative_miner == "model":
        say(f"[train] mining hard negatives with the base model over {len(training_passages)} training chunks")
        ids_by_text = {text: cid for cid, text in training_passages.items()}
        # A masked (Inverse Cloze) positive is not a chunk's text: its query's chunk stands for it.
        positive_ids = [ids_by_text.get(text) or min(positives_by_query[anchor]) for anchor, text in zip(anchors, positives,
                                                                                                           strict=True)]
        negative_ids = mine_model_negatives(model, anchors, positive_ids, training_passages,
                                            neighbours, p.hard_negative_rank_max, p.hard_negative_relative_margin, p.seed,
                                            prompts.query, prompts.document)
    else:
        window = MiningWindow(p.hard_negative_rank_min, p.hard_negative_rank_max, p.hard_negative_margin)
        negative_ids = mine_bm25_negatives(anchors, [positives_by_query[a] for a in anchors], training_passages,
                                           neighbours, window, p.seed, desc="[train] mine hard negatives")
    return [training_passages[cid] for cid in negative_ids]


def _save_model(model, keeper, work: Path) -> None:
    """Write the best validated model (or the last one, without validation) to models/finetuned."""
    from stages.lib.training.checkpoints import BEST_DIR
    from stages.lib.training.saved_model import strip_run_timing

    best = work / BEST_DIR
    with replacing_directory(OUTPUT_DIR) as staging:
        if keeper.best_step is not None and best.is_dir():
            shutil.copytree(best, staging, dirs_exist_ok=True)
        else:
            model.save(str(staging))
        strip_run_timing(staging)


def _write_curves(log_history: list[dict]) -> list[dict]:
    from stages.lib.training.outcome import curves_from_history, write_curve

    loss_rows, val_rows = curves_from_history(log_history, VAL_PREFIX)
    write_curve(CURVES_DIR / "loss.csv", loss_rows)
    write_curve(CURVES_DIR / "val.csv", val_rows)
    return loss_rows


if __name__ == "__main__":
    main()
