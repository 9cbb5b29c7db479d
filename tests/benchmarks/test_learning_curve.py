"""The learning-curve benchmark's pieces that need no training: which related laws it adds, and that the
CSV it writes carries every field the dvc plots template draws."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from benchmarks.learning_curve import JUDGES, LAW_NAMES, RETRIEVERS, markdown_tables, related_for, write_csv

REPO = Path(__file__).resolve().parents[2]


def test_related_laws_never_include_a_judge_law():
    for law in JUDGES:
        related = related_for(law, 6)
        assert len(related) == 6
        assert not set(related) & set(LAW_NAMES.values()), related


def _row(hit: float) -> dict:
    return {"hit@5": hit, "mrr@10": hit / 2, "hit@5_ci_low": hit - 0.05, "hit@5_ci_high": hit + 0.05,
            "hit@5_diff_vs_bm25": 0.01, "hit@5_diff_vs_bm25_ci_low": -0.02, "hit@5_diff_vs_bm25_ci_high": 0.04,
            "hit@5_diff_vs_base": 0.02, "hit@5_diff_vs_base_ci_low": 0.0, "hit@5_diff_vs_base_ci_high": 0.05}


def test_curve_csv_has_what_the_plot_template_draws(tmp_path):
    scores = {name: {r: _row(0.5 + 0.1 * i) for i, r in enumerate(RETRIEVERS)} for name in ("val_zh", "test_zh")}
    transfer = {"labor_contract_law": {"test_zh": {"base": _row(0.6), "finetuned": _row(0.62)}}}
    points = {f"{source}_{n}": {"source": source, "train_pairs": n, "train_stage_seconds": n / 4, "scores": scores,
                                "transfer": transfer, "loss": "mnrl"} for source in ("target", "related") for n in (96, 384)}
    results = {"points": {"securities_law": points}, "related": {"securities_law": ["甲法"]}}
    path = tmp_path / "curve.csv"
    write_csv(results, path)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(rows) == 4 * 2 * len(RETRIEVERS)
    template = json.loads((REPO / "plots/learning_curve.json").read_text(encoding="utf-8"))
    fields = set(re.findall(r'"field": "([^"]+)"', json.dumps(template))) - {"rev"}  # rev: added by dvc plots
    assert fields <= set(rows[0]), fields - set(rows[0])
    table = markdown_tables(results)
    assert table.count("\n| mnrl | target |") == 2 and table.count("\n| mnrl | related |") == 2


def test_a_point_starts_from_a_copy_of_the_prepared_data_and_a_link_to_the_base_model(tmp_path):
    from benchmarks.project import copy_prepared

    prepared, project = tmp_path / "prepared", tmp_path / "point"
    (prepared / "data/questions").mkdir(parents=True)
    (prepared / "data/questions/train.json").write_text("{}", encoding="utf-8")
    (prepared / "models/base").mkdir(parents=True)
    (prepared / "models/base/config.json").write_text("{}", encoding="utf-8")
    copy_prepared(prepared, project, ("data/questions", "models/base"))
    assert (project / "dvc.yaml").is_file() and (project / "stages/train.py").is_file()
    assert (project / "models/base").is_symlink() and (project / "models/base/config.json").is_file()
    copied = project / "data/questions/train.json"
    assert copied.is_file() and not copied.is_symlink()
    copied.write_text('{"changed": 1}', encoding="utf-8")  # a point never writes into the prepared project
    assert (prepared / "data/questions/train.json").read_text(encoding="utf-8") == "{}"


def test_a_related_point_keeps_the_laws_own_pairs_and_fills_the_rest_from_related_laws():
    from benchmarks.learning_curve import pair_budgets

    assert pair_budgets("target", 192, own_available=746, own_pairs=384) == {"train.max_pairs": 192}
    assert pair_budgets("related", 3072, own_available=746, own_pairs=384) == {"train.max_pairs": 384,
                                                                                "train.max_extra_pairs": 2688}
    # A law with fewer own pairs than asked keeps all of them; the related laws fill up to the point's size.
    assert pair_budgets("related", 768, own_available=248, own_pairs=384) == {"train.max_pairs": 248,
                                                                               "train.max_extra_pairs": 520}
