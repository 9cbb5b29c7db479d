"""The documents' numbers come from the committed results: every rendered block is up to date, and a metric changed
by hand makes the check fail until the documents are rendered again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.render_docs import BLOCKS, Sources, documents, main, render_text, stale_blocks
from stages.lib.common.params import Params
from tests.helpers import REPO_ROOT

README_MAX_LINES = 250


def _copy_project(target: Path) -> Path:
    """What the renderer reads and writes: the documents, the result files, params.yaml, dvc.lock."""
    for folder in ("docs", "metrics", "benchmarks/results"):
        shutil.copytree(REPO_ROOT / folder, target / folder, ignore=shutil.ignore_patterns("*.png", "train_live"))
    for name in ("README.md", "params.yaml", "dvc.lock"):
        shutil.copy2(REPO_ROOT / name, target / name)
    return target


def test_every_rendered_block_in_the_readme_and_the_docs_is_up_to_date():
    assert stale_blocks(REPO_ROOT) == [], "run `python -m benchmarks.render_docs` and commit the documents"


def test_a_metric_changed_by_hand_makes_the_check_fail_until_rendered_again(tmp_path, capsys):
    project = _copy_project(tmp_path)
    assert main(["--check", "--root", str(project)]) == 0
    evaluation_file = project / "metrics/eval.json"
    evaluation = json.loads(evaluation_file.read_text(encoding="utf-8"))
    evaluation["golden_test_zh_incl_trained_passages"]["finetuned"]["hit@5"] = 0.5123
    evaluation_file.write_text(json.dumps(evaluation), encoding="utf-8")

    assert main(["--check", "--root", str(project)]) == 1
    stale = capsys.readouterr().out
    assert "stale: README.md: headline" in stale and "stale: docs/evaluation.md: golden-test-zh" in stale
    assert "0.512" not in (project / "README.md").read_text(encoding="utf-8")  # --check changes nothing

    assert main(["--root", str(project)]) == 0
    assert "| fine-tuned | 0.512 [" in (project / "README.md").read_text(encoding="utf-8")
    assert main(["--check", "--root", str(project)]) == 0


def test_a_changed_result_file_and_a_changed_param_each_show_where_they_are_quoted(tmp_path, capsys):
    project = _copy_project(tmp_path)
    resume_file = project / "benchmarks/results/resume_cost.json"
    resume = json.loads(resume_file.read_text(encoding="utf-8"))
    resume["rerun_share_of_full"] = 0.99
    resume_file.write_text(json.dumps(resume), encoding="utf-8")
    params = project / "params.yaml"
    params.write_text(params.read_text(encoding="utf-8").replace("max_tokens: 600", "max_tokens: 700"), encoding="utf-8")
    assert main(["--check", "--root", str(project)]) == 1
    stale = capsys.readouterr().out
    assert "docs/hardware.md: resume-cost" in stale and "docs/hardware.md: cpu-speeds" in stale
    assert "README.md: llm-cost" in stale and "docs/configuration.md: params-reference" in stale


def test_inline_and_whole_line_blocks_keep_their_shape():
    sources = Sources(REPO_ROOT)
    train = json.loads((REPO_ROOT / "metrics/train.json").read_text(encoding="utf-8"))
    inline = render_text("In the run <!-- render:checkpoints -->old<!-- /render:checkpoints -->, as measured.", sources)
    assert inline == (f"In the run <!-- render:checkpoints -->{train['checkpoints_saved']} checkpoints took "
                      f"{train['checkpoint_seconds']:.1f} s together<!-- /render:checkpoints -->, as measured.")
    whole = render_text("Before\n\n<!-- render:transfer -->\nold\n<!-- /render:transfer -->\n\nAfter", sources)
    lines = whole.splitlines()
    assert lines[2] == "<!-- render:transfer -->" and lines[3] == "" and lines[4].startswith("| other law's golden test |")
    assert render_text(whole, sources) == whole


def test_an_unknown_block_stops_with_the_names_it_knows():
    with pytest.raises(SystemExit, match="unknown rendered block 'no-such-block'.*headline"):
        render_text("<!-- render:no-such-block -->x<!-- /render:no-such-block -->", Sources(REPO_ROOT), "README.md")


def test_an_inline_block_that_starts_a_line_is_refused():
    # Markdown reads a line that starts with "<!--" as an HTML block: the sentence around the number would break.
    with pytest.raises(SystemExit, match="inline block 'checkpoints' starts a line"):
        render_text("In the committed run\n  <!-- render:checkpoints -->x<!-- /render:checkpoints --> together.",
                    Sources(REPO_ROOT), "docs/hardware.md")


def test_every_block_is_used_and_every_params_key_is_in_the_reference():
    text = "\n".join(path.read_text(encoding="utf-8") for path in documents(REPO_ROOT))
    assert [name for name in BLOCKS if f"<!-- render:{name} -->" not in text] == []

    def keys(model, prefix: str):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields"):
                yield from keys(field.annotation, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    reference = (REPO_ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    missing = [key for key in keys(Params, "") if f"| `{key}` |" not in reference]
    assert missing == [] and "| `train.learning_rate` | `2e-05` |" in reference


def test_the_readme_is_short():
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md is {len(lines)} lines: move detail into docs/"
