"""The grids as DVC experiments, without running one: the ``dvc exp run --queue`` commands the learning curve and
the training variants queue (parsed and applied by DVC's own override code, then validated by the params
loader), reading ``dvc exp show --json`` back, and rendering the curve CSV and tables from experiments and from
the points measured before the grids were experiments."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

from ruamel.yaml import YAML

from benchmarks.learning_curve import (
    CURVE_CSV,
    LAW_NAMES,
    RETRIEVERS,
    experiment_point,
    grid_commands,
    markdown_tables,
    merged_results,
    read_history,
    related_for,
    write_csv,
)
from benchmarks.project import JUDGES, Experiment, Sweep, override, parse_exp_show, shell_line
from benchmarks.training_variants import VARIANTS, experiment_variants, experiments_table, variant_command

REPO = Path(__file__).resolve().parents[2]


def test_related_laws_never_include_a_judge_law():
    for law in JUDGES:
        related = related_for(law, 6)
        assert len(related) == 6
        assert not set(related) & set(LAW_NAMES.values()), related


def _apply_with_dvc(command: list[str], tmp_path: Path) -> list:
    """What `dvc exp run --queue` does with the command's -S arguments: DVC's Hydra sweep split, then each
    experiment's overrides applied to a copy of params.yaml and loaded by the project's params loader."""
    from dvc.utils.hydra import apply_overrides, get_hydra_sweeps

    from stages.lib.common.params import load_params

    overrides = [command[i + 1] for i, arg in enumerate(command) if arg == "-S"]
    loaded = []
    for number, sweep in enumerate(get_hydra_sweeps({"params.yaml": overrides})):
        path = tmp_path / f"{number}" / "params.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "params.yaml", path)
        apply_overrides(str(path), sweep["params.yaml"])
        loaded.append(load_params(path))
    return loaded


def test_a_target_grid_is_one_queued_command_with_one_experiment_per_size(tmp_path):
    [command] = grid_commands("labor_contract_law", "target", [96, 192, 384, 768], "gist", [], 384)
    assert shell_line(command) == (
        "dvc exp run --queue --name curve-labor_contract_law-gist-target -S 'sample.laws=[\"中华人民共和国劳动合同法\"]' "
        "-S train.loss=gist -S 'sample.extra_laws=[]' -S train.max_pairs=96,192,384,768")
    points = _apply_with_dvc(command, tmp_path)
    assert [params.train.max_pairs for params in points] == [96, 192, 384, 768]
    for params in points:
        assert params.sample.laws == ["中华人民共和国劳动合同法"] and params.sample.extra_laws == []
        assert params.train.loss == "gist"
        assert params.evaluate.golden_sets == ["data/golden/*.jsonl"]  # own golden set, and the other law's transfer


def test_a_related_grid_adds_the_related_laws_as_a_list_and_sweeps_their_budget(tmp_path):
    related = related_for("securities_law", 6)
    [command] = grid_commands("securities_law", "related", [384, 1152], "gist", related, 384)
    points = _apply_with_dvc(command, tmp_path)
    assert [(p.train.max_pairs, p.train.max_extra_pairs) for p in points] == [(384, 384), (384, 1152)]
    assert all(p.sample.extra_laws == related and p.sample.laws == ["中华人民共和国证券法"] for p in points)


def test_every_training_variant_queues_as_a_valid_named_experiment(tmp_path):
    for name, settings in VARIANTS.items():
        command = variant_command(name, "labor_contract_law")
        assert command[:6] == ["dvc", "exp", "run", "--queue", "--name", f"{name}-labor_contract_law"]
        [params] = _apply_with_dvc(command, tmp_path / name)  # one experiment: no sweep in a variant
        assert params.sample.laws == ["中华人民共和国劳动合同法"]
        for dotted, value in settings.items():
            section, key = dotted.split(".", 1)
            assert getattr(getattr(params, section), key) == value, (name, dotted)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", command[5]), command[5]  # a valid experiment (git ref) name


def test_overrides_quote_what_hydra_would_misread():
    assert override("train.learning_rate", 2e-5) == "train.learning_rate=2e-05"
    assert override("train.loss", "gist") == "train.loss=gist"
    assert override("questions.generator", "true") == 'questions.generator="true"'
    assert override("sample.laws", ["中华人民共和国证券法"]) == 'sample.laws=["中华人民共和国证券法"]'
    assert override("train.max_pairs", Sweep((16, 24))) == "train.max_pairs=16,24"
    assert override("train.hard_negatives", True) == "train.hard_negatives=true"


def _show_entry(name: str, state: str | None, metrics: dict, params: dict) -> dict:
    """One experiment as `dvc exp show --json` (DVC 3) lists it."""
    return {"executor": None if state is None else {"state": state, "name": "dvc-task"}, "name": name,
            "revs": [{"rev": f"{len(name):040d}", "name": name, "error": None, "experiments": None,
                      "data": {"rev": "x", "params": {"params.yaml": {"data": params}},
                               "metrics": {path: {"data": data} for path, data in metrics.items()}}}]}


# The default run as committed at 1d46618 (its params.yaml and metrics/*.json), the code the learning curve's history
# was measured with: the runs committed since (issue 30's faster training step) are not points of that history.
MEASURED_RUN = Path(__file__).parent / "data/run_1d46618"


def _committed_run() -> Experiment:
    """The default run the history's 384-pair Securities Law point reproduced, read as an experiment."""
    params = YAML(typ="safe").load((MEASURED_RUN / "params.yaml").read_text(encoding="utf-8"))
    metrics = {path: json.loads((MEASURED_RUN / path).read_text(encoding="utf-8"))
               for path in ("metrics/train.json", "metrics/eval.json", "metrics/transfer.json")}
    return Experiment("committed", "0" * 40, params, metrics)


def test_exp_show_json_is_read_into_finished_experiments_only():
    committed = _committed_run()
    shown = [{"rev": "workspace", "name": None, "data": {}, "error": None, "experiments": None},
             {"rev": "1" * 40, "name": "main", "data": {}, "error": None, "experiments": [
                 _show_entry("curve-1", "success", committed.metrics, committed.params),
                 _show_entry("curve-2", "failed", committed.metrics, committed.params),
                 _show_entry("curve-3", "queued", {}, committed.params),
                 _show_entry("by-hand", None, committed.metrics, committed.params)]}]
    experiments = parse_exp_show(shown)
    assert [e.name for e in experiments] == ["curve-1", "by-hand"]
    assert experiments[0].param("train.max_pairs") == 384 and experiments[0].param("train.nothing", 7) == 7
    assert experiments[0].metric("metrics/eval.json") == committed.metrics["metrics/eval.json"]
    assert experiments[0].metric("metrics/transfer.json") == committed.metrics["metrics/transfer.json"]
    assert experiments[0].metric("metrics/absent.json") == {}


def test_the_committed_run_read_as_an_experiment_is_its_point_of_the_measured_curve():
    # The Securities Law's gist 384-pair point of the history is the committed default run (docs/experiments.md): the same
    # golden test scores, now read from the run's own metrics/eval.json instead of scored by the benchmark.
    law, point = experiment_point(_committed_run())
    measured = read_history()["points"]["securities_law"]["gist_target_384"]
    assert law == "securities_law" and point["source"] == "target" and point["loss"] == "gist"
    assert (point["train_pairs"], point["steps"], point["best_step"]) == (384, 12, 6)
    for split in ("test_zh", "test_en"):
        for retriever in RETRIEVERS:
            for key, value in measured["scores"][split][retriever].items():
                if key.startswith("hit@5"):
                    assert point["scores"][split][retriever][key] == value, (split, retriever, key)
    table = markdown_tables(merged_results({}, [_committed_run()]))
    # Train seconds are the committed run's own (a timing); transfer, from its metrics/transfer.json, is what the
    # benchmark measured for this point (docs/experiments.md "How much data do I need?").
    seconds = point["train_seconds"]
    assert (f"| committed | gist | target | 384 | {seconds:.0f} | 7.5 | NDCG@10 +0.066 | +0.065 [+0.030, +0.100] "
            "| +0.060 [+0.000, +0.124] | +0.050 [+0.015, +0.090] | 0.604 | +0.033 [+0.000, +0.072] |") in table


def test_transfer_is_read_from_the_evaluate_stages_transfer_metrics():
    run = _committed_run()
    transfer = {"labor_contract_law": {"test_zh": {"queries": 180,
                                                   "base": {"hit@5": 0.8222, "mrr@10": 0.67, "ndcg@10": 0.7},
                                                   "finetuned": {"hit@5": 0.8556, "mrr@10": 0.72, "ndcg@10": 0.75}}}}
    with_transfer = Experiment("with-transfer", run.rev, run.params, {**run.metrics, "metrics/transfer.json": transfer})
    _, point = experiment_point(with_transfer)
    assert point["transfer"]["labor_contract_law"]["test_zh"]["finetuned"]["hit@5"] == 0.8556
    assert markdown_tables(merged_results({}, [with_transfer])).splitlines()[-1].endswith("| 0.604 | +0.033 |")
    # The evaluate stage also writes the paired-bootstrap interval of fine-tuned - base: the table shows it.
    transfer["labor_contract_law"]["test_zh"]["finetuned"].update(
        {"hit@5_diff_vs_base": 0.0333, "hit@5_diff_vs_base_ci_low": 0.0, "hit@5_diff_vs_base_ci_high": 0.0722})
    assert markdown_tables(merged_results({}, [with_transfer])).splitlines()[-1].endswith(
        "| 0.604 | +0.033 [+0.000, +0.072] |")


def test_the_measured_history_renders_the_committed_curve_csv(tmp_path):
    # Converting the benchmark to experiments changed no measured number: the curve drawn from the history is
    # the committed file, byte for byte.
    path = tmp_path / "curve.csv"
    write_csv(merged_results(read_history(), []), path)
    assert path.read_bytes() == CURVE_CSV.read_bytes()


def test_curve_csv_has_what_the_plot_template_draws(tmp_path):
    path = tmp_path / "curve.csv"
    write_csv(merged_results(read_history(), [_committed_run()]), path)
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    template = json.loads((REPO / "plots/learning_curve.json").read_text(encoding="utf-8"))
    fields = set(re.findall(r'"field": "([^"]+)"', json.dumps(template))) - {"rev"}  # rev: added by dvc plots
    assert fields <= set(rows[0]), fields - set(rows[0])
    # The experiment adds its golden test rows (zh and en, four retrievers) beside the history's.
    assert len(rows) == len(list(csv.DictReader(CURVE_CSV.open(encoding="utf-8")))) + 2 * len(RETRIEVERS)


def test_variant_experiments_are_tabled_by_variant_and_law():
    run = _committed_run()
    experiments = [Experiment(f"default_gist-{law}", run.rev, run.params, run.metrics) for law in JUDGES]
    experiments.append(Experiment("not-a-variant", run.rev, run.params, run.metrics))
    found = experiment_variants(experiments)
    assert set(found) == set(JUDGES) and all(set(variants) == {"default_gist"} for variants in found.values())
    table = experiments_table(found)
    seconds = f"{run.metrics['metrics/train.json']['train_seconds']:.0f}"  # a timing: the committed run's own
    assert table.splitlines()[2] == f"| default_gist | {seconds} | 6 of 12 | 0.663 (0.597) | {seconds} | 6 of 12 | 0.663 (0.597) |"


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
