"""The training curves, logged with DVCLive: what ``dvc plots`` draws and ``dvc exp show`` lists for a run.

Per logging step of the Trainer: ``train/loss`` and ``train/learning_rate``. Per validation pass: each
candidate's ``val/<candidate>/ndcg@10``, ``mrr@10`` and ``hit@5`` (``base`` at step 0, the base model
itself; ``finetuned`` at every later step). After training: the selection, ``selection/best_step`` and
``selection/wise_ft_alpha`` (with the val NDCG@10 of what was saved and of each α compared), in the summary
only. DVCLive writes ``<dir>/plots/metrics/<name>.tsv`` (columns ``step`` and the metric) and the summary
``<dir>/metrics.json``; dvc.yaml declares both, so the Live object must not write a dvc.yaml of its own
nor save an experiment (``dvc exp run`` does that).

A resumed run rebuilds its curves from the checkpoint's log history (which holds every entry logged up to
the checkpoint's step) before it goes on: rows logged after that checkpoint by the killed run are never
read back, so the curve has every step once, whatever was on disk.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from transformers import TrainerCallback

from stages.lib.training.validation import CURVE_SCORES


def candidate(step: int) -> str:
    """What a validation pass at ``step`` scored: the base model at step 0 (eval on start), else the fine-tune."""
    return "base" if step == 0 else "finetuned"


def curve_points(entry: dict, step: int) -> dict[str, float]:
    """The curve names and values of one Trainer log entry (a training log or a validation pass)."""
    points = {}
    if "loss" in entry:
        points["train/loss"] = entry["loss"]
    if "learning_rate" in entry:
        points["train/learning_rate"] = entry["learning_rate"]
    for name, key in CURVE_SCORES.items():
        if key in entry:
            points[f"val/{candidate(step)}/{name}"] = entry[key]
    return points


def open_live(live_dir: Path):
    """DVCLive's ``Live`` on ``live_dir``: no dvc.yaml or experiment of its own (dvc.yaml declares its files, and
    ``dvc exp run`` saves experiments), no report; also in a git repository with no commit yet."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class FirstCommitSafeLive(Live):
        # DVCLive 3.49 asks git for the current commit before it checks that there is one, so `git init`,
        # `dvc init`, `dvc repro` (a new user's first run) would raise here. Without a commit there is no
        # experiment to link the curves to (its own no-commit branch does nothing more): the files are the same.
        def _init_dvc(self):
            with contextlib.suppress(SCMError):
                super()._init_dvc()

    return FirstCommitSafeLive(dir=str(live_dir), resume=False, report=None, dvcyaml=False, save_dvc_exp=False)


class LiveCurves(TrainerCallback):
    """Logs every Trainer log entry's curve points to DVCLive at its step (only the process given one: rank 0)."""

    def __init__(self, live_dir: Path) -> None:
        self.live_dir = live_dir
        self.live = None

    def on_train_begin(self, args, state, control, **kwargs):
        # Not resume=True: that would keep the killed run's rows after the checkpoint. A fresh folder, refilled
        # from the history the Trainer restored with the checkpoint (empty on a fresh run).
        self.live = open_live(self.live_dir)
        for entry in state.log_history:
            self._log(entry, entry.get("step", 0))
        self.live.make_summary()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.live is not None and self._log(logs or {}, state.global_step):
            self.live.make_summary()  # current while the run goes on: `dvc exp show` and the VS Code extension read it

    def _log(self, entry: dict, step: int) -> bool:
        points = curve_points(entry, step)
        self.live.step = step
        for name, value in points.items():
            self.live.log_metric(name, value)
        return bool(points)

    def finish(self, step: int, best_step: int, alpha: float, kept_score: float | None,
               wise_ft_scores: dict[str, float]) -> None:
        """The selection, as summary metrics at the run's last step; then the summary is written for good.

        ``wise_ft_scores``: α's metric tag (e.g. ``a050``) -> the val NDCG@10 of that mix.
        """
        if self.live is None:
            return
        self.live.step = step
        self.live.log_metric("selection/best_step", best_step, plot=False)
        self.live.log_metric("selection/wise_ft_alpha", alpha, plot=False)
        if kept_score is not None:
            self.live.log_metric("selection/val_ndcg@10", kept_score, plot=False)
        for tag, score in wise_ft_scores.items():
            self.live.log_metric(f"selection/wise_ft/{tag}/ndcg@10", score, plot=False)
        self.live.make_summary()  # at ``step``: end() keeps the summary's step
        self.live.end()


def read_val_curve(live_dir: Path, metric: str = "ndcg@10") -> dict[int, float]:
    """Step -> val ``metric`` from a run's DVCLive series (``live_dir``, e.g. ``metrics/train_live``): step 0 is the
    base model, the later steps the fine-tune. Empty when the run logged no validation."""
    curve = {}
    for name in ("base", "finetuned"):
        path = live_dir / "plots/metrics/val" / name / f"{metric}.tsv"
        if path.is_file():
            rows = (line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:])
            curve.update({int(step): float(score) for step, score in rows})
    return dict(sorted(curve.items()))
