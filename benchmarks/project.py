"""A fresh copy of the pipeline for a benchmark to run its stages in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# What the stages read from the repository itself (the rest they make).
PIPELINE_FILES = ("dvc.yaml", "params.yaml", "stages", "data/golden")


def copy_pipeline(folder: Path) -> None:
    for name in PIPELINE_FILES:
        source, target = REPO_ROOT / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def copy_prepared(prepared: Path, project: Path, outputs: tuple[str, ...]) -> None:
    """A fresh pipeline in ``project`` holding ``outputs`` of an already prepared one (data, models/base).

    ``models/base`` is linked, not copied: train only reads it, and a link saves 470 MB per run.
    """
    copy_pipeline(project)
    for output in outputs:
        source, target = prepared / output, project / output
        if output == "models/base":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve(), target_is_directory=True)
        else:
            shutil.copytree(source, target)


def write_result(path: Path | None, result: dict | list) -> None:
    """Write a benchmark's result as JSON to ``path`` (relative paths from the repository root); None: nothing."""
    if path is None:
        return
    target = path if path.is_absolute() else REPO_ROOT / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
