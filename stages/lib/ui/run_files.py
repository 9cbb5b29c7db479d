"""What the UI reads from a run, which ``dvc repro`` stage writes each piece, and whether it is there and current.

* **Missing**: every output the UI reads names the stage that writes it, and the views it stops
  (``missing_outputs``): the page says so in place of that view, and the other views keep working.
* **Stale** (``stale_outputs``): against ``dvc.lock``, the record of the last ``dvc repro``, asked of DVC itself.
  For each stage whose outputs the UI shows, DVC's workspace status of the params, data dependencies and outputs
  it recorded (the stages as ``dvc.yaml`` and ``dvc.lock`` define them, hashed as ``dvc status`` hashes them, with
  the hashes its last run stored reused). A difference means that what the page shows was not computed from what
  is here (``metrics/eval.json`` from another ``models/trained``, a param changed since): the message names the
  file or key and the stage to rerun. Code dependencies (``stages/``) are ``dvc status``'s business: code edited
  but not yet rerun is a developer's state, not a result that disagrees with its inputs.
* Without a ``dvc.lock`` entry for it, the shipped model is still checked: ``models/finetuned`` must hold
  the weights of ``models/trained`` (what ``metrics/eval.json`` measured), compared by content.

Nothing in the project is written (DVC may add hashes to its own hash database outside it, as ``dvc status`` does).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.files import content_hash
from stages.lib.retrieval.one_query import MODELS

log = logging.getLogger(__name__)

PIPELINE_FILE, LOCK_FILE = Path("dvc.yaml"), Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")
SEARCH, QUESTIONS, REPORT = "search", "questions", "report"
TRAINED, SHIPPED = MODELS["finetuned"][0], Path("models/finetuned")


@dataclass(frozen=True)
class Output:
    path: Path
    stage: str  # the `dvc repro` stage that writes it
    views: tuple[str, ...]  # the views that lack something without it
    lost: str  # what exactly the page cannot show without it
    folder: bool = False


OUTPUTS = (
    Output(Path("data/corpus/chunks.jsonl"), "corpus", (SEARCH, QUESTIONS), "the search, nor the golden questions' labels"),
    Output(Path("data/questions/train.json"), "questions", (QUESTIONS,), "the synthetic train split's questions"),
    Output(Path("data/questions/val.json"), "questions", (QUESTIONS,), "the synthetic val split's questions"),
    Output(Path("data/questions/test.json"), "questions", (QUESTIONS,), "the synthetic test split's questions"),
    Output(Path("models/base"), "base_model", (SEARCH,), "the search", folder=True),
    Output(TRAINED, "train", (SEARCH,), "the search", folder=True),
    Output(Path("metrics/train.json"), "train", (REPORT,), "what training selected"),
    Output(Path("metrics/eval.json"), "evaluate", (REPORT,), "the report's tables"),
    Output(Path("metrics/eval_by_style.json"), "evaluate", (REPORT,), "the report's table by query style"),
    Output(Path("metrics/hit_rate.csv"), "evaluate", (REPORT,), "the hit@k curves"),
    Output(Path("data/eval/per_query.jsonl"), "evaluate", (REPORT,), "the error analysis"),
    # What ships: not read by the page, checked to hold the weights the page and the report are about.
    Output(SHIPPED, "model_card", (), "", folder=True),
)
# The stages whose records the stale check reads, in pipeline order, with the views their outputs feed.
CHECKED_STAGES = {"corpus": (SEARCH, QUESTIONS, REPORT), "questions": (QUESTIONS, REPORT), "base_model": (SEARCH, REPORT),
                  "train": (SEARCH, REPORT), "evaluate": (REPORT,), "model_card": ()}
# Dependencies that are not data: code (dvc status reports it), and the params check's constant file.
NOT_DATA = ("stages/", "data/params_checked.txt")


@dataclass(frozen=True)
class Problem:
    """One paragraph for the page: what is wrong, with the file or key named, and the fix."""

    message: str
    kind: str  # "missing", "invalid", "stale" or "note"
    stage: str | None = None  # the `dvc repro` stage that fixes it
    views: tuple[str, ...] = ()  # the views it stops ("missing", "invalid") or puts in doubt ("stale")

    def to_json(self) -> dict:
        return {"message": self.message, "kind": self.kind, "stage": self.stage, "views": list(self.views)}


def model_problem(path: Path, stage: str | None, option: str) -> Problem | None:
    """Why ``path`` cannot be one of the page's models, or None when it is a sentence-transformers folder."""
    how = f"run `dvc repro {stage}`" if stage else f"point {option} at a sentence-transformers folder such as {TRAINED}"
    if not path.exists():
        return Problem(f"{path} is missing: {how}. Until then the page cannot search.", "missing", stage, (SEARCH,))
    if not path.is_dir() or not (path / "modules.json").is_file():
        what = "a folder" if not path.is_dir() else "a sentence-transformers folder (it has no modules.json)"
        return Problem(f"{path} is not {what}: {how}. Until then the page cannot search.", "invalid", stage, (SEARCH,))
    return None


def missing_outputs(models: dict[str, Path]) -> list[Problem]:
    """Outputs the UI reads that are not there, and model folders that are not models (fast: nothing is hashed)."""
    problems = []
    for output in OUTPUTS:
        if output.folder and output.path in {path for path, _ in MODELS.values()}:
            continue  # the page's models are checked below, whichever folders the options chose
        if not output.path.exists():
            effect = f"Until then the page cannot show {output.lost}." if output.lost else \
                "It is what ships (the model with its card)."
            problems.append(Problem(f"{output.path} is missing: run `dvc repro {output.stage}`. {effect}", "missing",
                                    output.stage, output.views))
    for name, path in models.items():
        default, stage = MODELS[name]
        option = "--base-dir" if name == "base" else "--finetuned-dir"
        problem = model_problem(path, stage if path == default else None, option)
        if problem:
            problems.append(problem)
        elif path != default:
            problems.append(Problem(f"The {name} column searches with {path} ({option}), not {default}: the report is "
                                    f"about {default}, the model the evaluation measured.", "note", None, (SEARCH,)))
    return problems


# -- the stale check: DVC's own status -------------------------------------------------------------------------


def stale_outputs(skip_stages: Iterable[str] = ()) -> list[Problem]:
    """Each checked stage whose record in ``dvc.lock`` disagrees with the files or params here, by DVC's status."""
    if not LOCK_FILE.is_file():
        return [Problem(f"There is no {LOCK_FILE} here, so the outputs cannot be checked against the run that made them. "
                        "Run `dvc repro` to make and record them.", "note", None, ())] + _shipped_weights()
    from dvc.dvcfile import ProjectFile  # imported here: the page's other views start without DVC
    from dvc.exceptions import DvcException

    started = time.perf_counter()
    with _open_repo() as repo:
        try:
            pipeline = ProjectFile(repo, os.path.abspath(PIPELINE_FILE))
            recorded = pipeline.lockfile_contents.get("stages") or {}
            stages = {stage.name: stage for stage in pipeline.stages.values()}
            problems = [problem for name, views in CHECKED_STAGES.items() if name not in skip_stages
                        for problem in _stage_problems(name, views, stages.get(name), name in recorded)]
        except DvcException as error:  # a conflict marker, a truncated file, a bad interpolation: say so, check nothing else
            cause = str(error).splitlines()[0] if str(error) else type(error).__name__
            return [Problem(f"{PIPELINE_FILE}, {LOCK_FILE} or {PARAMS_FILE} cannot be read ({cause}): resolve it (e.g. a "
                            "merge conflict), then run `dvc repro`.", "invalid", None, ())]
    if "model_card" not in recorded:
        problems.extend(_shipped_weights())
    log.debug("the check against %s took %.2f s", LOCK_FILE, time.perf_counter() - started)
    return problems


@contextlib.contextmanager
def _open_repo():
    """The project as DVC sees it. In a DVC project DVC reuses the hashes its last run stored (sub-second on the
    default run). A copy of a run without ``.dvc/`` is read too: DVC then hashes every file, with an empty cache
    folder to stage folder listings in (it needs one; nothing of the project goes there), removed afterwards."""
    from dvc.fs import localfs
    from dvc.repo import Repo

    if Path(".dvc").is_dir():
        with Repo(os.curdir) as repo:
            yield repo
        return
    with tempfile.TemporaryDirectory(prefix="ui-dvc-cache-") as cache, \
            Repo(os.path.abspath(os.curdir), fs=localfs, uninitialized=True, config={"cache": {"dir": cache}}) as repo:
        # An absolute root and an explicit file system: else DVC roots an uninitialised repo at a relative "." or at
        # the enclosing git repository, and no output counts as inside it.
        yield repo


def _stage_problems(name: str, views: tuple[str, ...], stage, recorded: bool) -> list[Problem]:
    if stage is None:
        return []  # not a stage of this dvc.yaml: nothing `dvc repro` could rerun
    if not recorded:
        if any(o.stage == name and o.path.exists() for o in OUTPUTS):
            return [Problem(f"{LOCK_FILE} has no record of stage '{name}', so its outputs here were not made by "
                            f"`dvc repro`: run `dvc repro {name}`.", "stale", name, views)]
        return []
    reasons = _differences(stage)
    if not reasons:
        return []
    shown = "; ".join(reasons[:4]) + (f"; and {len(reasons) - 4} more" if len(reasons) > 4 else "")
    return [Problem(f"Stage '{name}' is out of date: {shown}. What the page shows from it may not match the files "
                    f"here: run `dvc repro {name}`.", "stale", name, views)]


def _differences(stage) -> list[str]:
    """DVC's workspace status of the stage's params, data dependencies and outputs, in dvc.lock's order (by key, by path).

    ``workspace_status`` rather than ``stage.status()``: the latter also asks whether each output is in the DVC cache
    (a copy of a run has none) and takes the repository's lock, which a ``dvc repro`` running beside the page holds."""
    from dvc.dependency.param import ParamsDependency

    reasons = []
    params = [dep for dep in stage.deps if isinstance(dep, ParamsDependency)]
    data = sorted((dep for dep in stage.deps if not isinstance(dep, ParamsDependency)), key=lambda dep: dep.def_path)
    for dep in params:
        changed = dep.workspace_status().get(str(dep)) or {}
        if changed:
            current, ran_with = dep.read_params(), dep.hash_info.value or {}
            for key in sorted(changed):
                reasons.append(f"{PARAMS_FILE} has {key}: {_show(current.get(key, _ABSENT))}, it ran with "
                               f"{_show(ran_with.get(key, _ABSENT))}")
    for dep in data:
        if dep.def_path.startswith(NOT_DATA):
            continue
        status = dep.workspace_status().get(str(dep))
        if status == "deleted":
            reasons.append(f"its input {dep.def_path} is missing")
        elif status == "modified":
            reasons.append(f"its input {dep.def_path} is not the one it ran on")
    for out in sorted(stage.outs, key=lambda out: out.def_path):
        if out.persist:
            continue  # a persistent cache grows by itself between runs; what it holds never changes a result
        if out.workspace_status().get(str(out)) == "modified":  # "deleted" is reported as missing, by the views
            reasons.append(f"{out.def_path} is not what it wrote")
    return reasons


_ABSENT = object()


def _show(value) -> str:
    return "absent" if value is _ABSENT else json.dumps(value, ensure_ascii=False)


def _shipped_weights() -> list[Problem]:
    if not (TRAINED.is_dir() and SHIPPED.is_dir()):
        return []
    if content_hash(TRAINED) != content_hash(SHIPPED):  # README.md (the card) is left out of the hash
        return [Problem(f"{SHIPPED} holds other weights than {TRAINED}, the model the evaluation measured: run "
                        "`dvc repro model_card`.", "stale", "model_card", ())]
    return []
