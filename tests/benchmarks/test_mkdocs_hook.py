"""The documentation site builds offline in strict mode, and the build fails on a stale rendered block or a broken
link (mkdocs.yml: ``strict: true`` and the hook in benchmarks/mkdocs_hook.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from tests.helpers import REPO_ROOT


def _build(project: Path, site: Path) -> None:
    """``mkdocs build --strict`` in this process, as the CLI runs it."""
    build(load_config(str(project / "mkdocs.yml"), site_dir=str(site), strict=True))


def _copy_project(target: Path) -> Path:
    for folder in ("docs", "metrics", "benchmarks"):
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", "train_live"))
    for name in ("README.md", "params.yaml", "dvc.lock", "mkdocs.yml"):
        shutil.copy2(REPO_ROOT / name, target / name)
    return target


def test_the_site_builds_offline_in_strict_mode_with_every_page(tmp_path):
    site = tmp_path / "site"
    _build(REPO_ROOT, site)
    config = load_config(str(REPO_ROOT / "mkdocs.yml"))
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    assert sorted(pages) == sorted(path.name for path in (REPO_ROOT / "docs").glob("*.md"))  # no page left out
    for page in pages:
        html = (site / page.replace(".md", ".html")).read_text(encoding="utf-8")
        # Nothing fetched from elsewhere when the page is read: no web fonts, no scripts or styles from a CDN.
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html
        assert not [line for line in html.splitlines() if ('src="http' in line or 'rel="stylesheet" href="http' in line)]
    reference = (site / "configuration.html").read_text(encoding="utf-8")
    assert "<code>train.learning_rate</code>" in reference and "<table>" in reference


def test_a_stale_block_or_a_broken_link_fails_the_build(tmp_path, caplog):
    project = _copy_project(tmp_path / "project")
    evaluation_file = project / "metrics/eval.json"
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
    evaluation["golden_test_zh_incl_trained_passages"]["bm25"]["hit@5"] = 0.1
    evaluation_file.write_text(json.dumps(evaluation), encoding="utf-8")
    with pytest.raises(Abort):
        _build(project, tmp_path / "site")
    assert "rendered block(s) out of date" in caplog.text and "README.md: headline" in caplog.text
    caplog.clear()

    shutil.copy2(REPO_ROOT / "metrics/eval.json", evaluation_file)
    page = project / "docs/evaluation.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nSee [the missing page](no-such-page.md).\n", encoding="utf-8")
    with pytest.raises(Abort):
        _build(project, tmp_path / "site")
    assert "no-such-page.md" in caplog.text and "out of date" not in caplog.text
