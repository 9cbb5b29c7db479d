"""What the UI reads from a run, which ``dvc repro`` stage writes each piece, and whether it is there and current.

* **Missing**: every output the UI reads names the stage that writes it, and the views it stops
  (``missing_outputs``): the page says so in place of that view, and the other views keep working.
* **Stale** (``stale_outputs``): against ``dvc.lock``, the record of the last ``dvc repro``. For each stage
  whose outputs the UI shows, the outputs, data dependencies and params it records are compared with the
  files and ``params.yaml`` here, by DVC's own hashes (a file: the md5 of its bytes; a folder: the md5 of the
  sorted list of its files' md5s, plus ``.dir``). A difference means that what the page shows was not computed
  from what is here (``metrics/eval.json`` from another ``models/trained``, a param changed since): the message
  names the file or key and the stage to rerun. Code dependencies (``stages/``) are ``dvc status``'s business:
  code edited but not yet rerun is a developer's state, not a result that disagrees with its inputs.
* Without a ``dvc.lock`` entry for it, the shipped model is still checked: ``models/finetuned`` must hold
  the weights of ``models/trained`` (what ``metrics/eval.json`` measured), compared by content.

Nothing here writes: hashes are computed, never stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.files import content_hash, file_digest
from stages.lib.retrieval.one_query import MODELS

LOCK_FILE = Path("dvc.lock")
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
# Outputs that grow by themselves between runs (persistent caches): what they hold never changes a result.
PERSISTENT = ("data/embedding_cache", "data/llm_cache")


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


# -- the stale check -------------------------------------------------------------------------------------------


def dvc_md5(path: Path, memo: dict[Path, str] | None = None) -> str:
    """DVC's hash of a file (md5 of its bytes) or folder (md5 of its sorted ``{"md5", "relpath"}`` list + ``.dir``)."""
    memo = {} if memo is None else memo
    if path not in memo:
        if path.is_dir():
            entries = [{"md5": file_digest(p, "md5"), "relpath": p.relative_to(path).as_posix()}
                       for p in sorted(path.rglob("*")) if p.is_file()]
            entries.sort(key=lambda entry: entry["relpath"])
            memo[path] = hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"
        else:
            memo[path] = file_digest(path, "md5")
    return memo[path]


def _yaml(path: Path):
    from ruamel.yaml import YAML  # YAML 1.2, as params are read: `2e-05` is a number in both files

    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _param(tree, dotted: str):
    value = tree
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


_ABSENT = object()


def _show(value) -> str:
    return "absent" if value is _ABSENT else json.dumps(value, ensure_ascii=False)


def stale_outputs(skip_stages: Iterable[str] = ()) -> list[Problem]:
    """Each checked stage whose record in ``dvc.lock`` disagrees with the files or params here (slow: hashes models)."""
    if not LOCK_FILE.is_file():
        return [Problem(f"There is no {LOCK_FILE} here, so the outputs cannot be checked against the run that made them. "
                        "Run `dvc repro` to make and record them.", "note", None, ())] + _shipped_weights()
    try:
        stages = (_yaml(LOCK_FILE) or {}).get("stages") or {}
        params = _yaml(PARAMS_FILE) if PARAMS_FILE.is_file() else {}
    except Exception as error:  # a conflict marker or a truncated file: say so, check nothing else
        return [Problem(f"{LOCK_FILE} or {PARAMS_FILE} cannot be read ({type(error).__name__}): resolve it (e.g. a merge "
                        "conflict), then run `dvc repro`.", "invalid", None, ())]
    memo: dict[Path, str] = {}
    problems = []
    for stage, views in CHECKED_STAGES.items():
        if stage in skip_stages:
            continue
        record = stages.get(stage)
        if not isinstance(record, dict):
            if any(o.stage == stage and o.path.exists() for o in OUTPUTS):
                problems.append(Problem(f"{LOCK_FILE} has no record of stage '{stage}', so its outputs here were not made "
                                        f"by `dvc repro`: run `dvc repro {stage}`.", "stale", stage, views))
            continue
        reasons = _differences(record, params, memo)
        if reasons:
            shown = "; ".join(reasons[:4]) + (f"; and {len(reasons) - 4} more" if len(reasons) > 4 else "")
            problems.append(Problem(f"Stage '{stage}' is out of date: {shown}. What the page shows from it may not match "
                                    f"the files here: run `dvc repro {stage}`.", "stale", stage, views))
    if "model_card" not in stages:
        problems.extend(_shipped_weights())
    return problems


def _differences(record: dict, params, memo: dict[Path, str]) -> list[str]:
    reasons = []
    for key, recorded in ((record.get("params") or {}).get(str(PARAMS_FILE)) or {}).items():
        current = _param(params, key)
        if current != recorded:
            reasons.append(f"params.yaml has {key}: {_show(current)}, it ran with {_show(recorded)}")
    for entry in record.get("deps") or []:
        path = Path(entry.get("path", ""))
        if str(path).startswith(NOT_DATA) or "md5" not in entry:
            continue
        if not path.exists():
            reasons.append(f"its input {path} is missing")
        elif dvc_md5(path, memo) != entry["md5"]:
            reasons.append(f"its input {path} is not the one it ran on")
    for entry in record.get("outs") or []:
        path = Path(entry.get("path", ""))
        if str(path) in PERSISTENT or "md5" not in entry or not path.exists():
            continue  # a missing output is reported as missing, by the views that need it
        if dvc_md5(path, memo) != entry["md5"]:
            reasons.append(f"{path} is not what it wrote")
    return reasons


def _shipped_weights() -> list[Problem]:
    if not (TRAINED.is_dir() and SHIPPED.is_dir()):
        return []
    if content_hash(TRAINED) != content_hash(SHIPPED):  # README.md (the card) is left out of the hash
        return [Problem(f"{SHIPPED} holds other weights than {TRAINED}, the model the evaluation measured: run "
                        "`dvc repro model_card`.", "stale", "model_card", ())]
    return []
