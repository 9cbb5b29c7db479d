"""The real pipeline under real `dvc`: a tiny Chinese corpus, end to end.

Tests in this module share one project (a copy of the session's reproduced tiny
pipeline) and run in file order: each leaves it reproduced, so the next one
starts from a clean `dvc status`.
"""

from __future__ import annotations

import json

import pytest

from stages.lib.training.live_curves import read_val_curve
from tests.helpers import ALL_STAGES, MINILM, copy_project, ran_every_stage, run, stages_run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`


@pytest.fixture(scope="module")
def project(tiny_pipeline, tmp_path_factory):
    # The session's one reproduced tiny pipeline, copied: the tests below change it.
    path = copy_project(tiny_pipeline.path, tmp_path_factory.mktemp("zh") / "project")
    return path, tiny_pipeline.output


def repro(path) -> list[str]:
    result = run(["dvc", "repro"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "--allow-empty", "-m", "repro"], path)
    return stages_run(result.stdout)


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_first_repro_runs_every_stage_and_prints_the_table(project):
    path, output = project
    assert ran_every_stage(output), output
    for stage in ALL_STAGES:
        assert f"[{stage}] finished in" in output
    assert "retriever" in output and "hit@5" in output
    for name in ("base", "finetuned", "bm25", "hybrid"):
        assert any(line.startswith(name + " ") for line in output.splitlines())
    metrics = read_json(path / "metrics/eval.json")
    for name in ("base", "finetuned", "bm25", "hybrid"):
        assert set(metrics[name]) >= {"hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "ndcg@10"}
        assert all(isinstance(v, float) for v in metrics[name].values())
    # Quality targets are checked on the full default run (tests/pipeline/test_committed_results.py);
    # one tiny epoch here only has to produce a different, working model.
    assert metrics["finetuned"] != metrics["base"]
    # The llama-index cross-check is off in the tiny params (tests/helpers.py): nothing of it is reported.
    assert not [key for key in metrics if "llamaindex" in key]
    train = read_json(path / "metrics/train.json")
    assert train["unk_rate_before"] > 0.4 and train["unk_rate_after"] == 0.0 and train["tokens_added"] > 100
    assert (path / "metrics/hit_rate.csv").read_text().startswith("question_set,retriever,k,hit_rate\ntest,base,1,")
    assert (path / "metrics/train_live/plots/metrics/train/loss.tsv").read_text().startswith("step\tloss\n")
    assert (path / "data/eval/per_query.jsonl").stat().st_size > 0


def test_without_a_golden_set_the_final_step_and_the_untuned_hybrid_are_kept(project):
    # The tiny laws have no golden set: synthetic val draws the curve only, nothing is chosen on it. The tiny run
    # lists train.wise_ft_alphas [0.5, 1.0] (tests/helpers.py): with nothing to choose on, alpha 1.
    path, output = project
    train = read_json(path / "metrics/train.json")
    assert train["selected_on"] == "final step" and train["best_step"] == train["steps"] > 0
    assert train["base_model_selected"] == 0 and train["wise_ft_alpha"] == 1.0
    assert not [key for key in train if key.startswith("wise_ft_val")]
    assert "no golden val about this corpus: the final step is kept" in output
    assert "weight ensembling with the base model skipped: no golden val to choose alpha on" in output
    logged = read_val_curve(path / "metrics/train_live")
    assert 0 in logged and train["steps"] in logged  # the curve is still drawn, from the base model on
    assert train["best_val_ndcg@10"] == pytest.approx(logged[train["steps"]], abs=1e-4)
    evaluation = read_json(path / "metrics/eval.json")
    assert (evaluation["hybrid_fusion"], evaluation["hybrid_dense_weight"]) == ("rrf", 1.0)
    assert evaluation["verdict"]["judge"] == "none" and evaluation["verdict"]["best_measured"] == 0
    assert output.index("Verdict:") < output.index("Synthetic test split, not a judge")


def test_no_test_passage_is_a_training_positive(project):
    path, _ = project
    train = read_json(path / "data/questions/train.json")
    test = read_json(path / "data/questions/test.json")
    train_positives = {cid for docs in train["relevant_docs"].values() for cid in docs}
    test_positives = {cid for docs in test["relevant_docs"].values() for cid in docs}
    assert test_positives and not train_positives & test_positives
    assert set(test["corpus"]) == set(train["corpus"])  # retrieval over the whole corpus


def test_finetuned_model_loads_in_sentence_transformers_and_llamaindex(project):
    path, _ = project
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from sentence_transformers import SentenceTransformer

    model_dir = str(path / "models/finetuned")
    vector = SentenceTransformer(model_dir, device="cpu").encode("国歌的演奏")
    li_vector = HuggingFaceEmbedding(model_name=model_dir, device="cpu").get_text_embedding("国歌的演奏")
    assert len(vector) == len(li_vector) == 384


def test_the_shipped_model_is_the_trained_one_with_its_evidence_card(project):
    path, _ = project
    trained, shipped = path / "models/trained", path / "models/finetuned"
    assert (shipped / "model.safetensors").read_bytes() == (trained / "model.safetensors").read_bytes()
    card = (shipped / "README.md").read_text(encoding="utf-8")
    assert MINILM["base"] in card and MINILM["revision"] in card
    # The tiny laws have no golden set: the card says there is no judge instead of showing a table.
    assert "No golden question set matched" in card and "## Synthetic test split" in card
    assert f"{read_json(path / 'metrics/train.json')['train_pairs']} pairs used of" in card
    # Rebuilt from the same metrics, the card is byte-identical: nothing in it comes from a clock.
    run(["dvc", "repro", "--force", "--single-item", "model_card"], path)
    assert (shipped / "README.md").read_text(encoding="utf-8") == card
    assert "up to date" in run(["dvc", "status"], path).stdout


def test_second_repro_runs_nothing(project):
    path, _ = project
    assert repro(path) == []
    assert "up to date" in run(["dvc", "status"], path).stdout


def test_evaluate_param_reruns_only_evaluate(project):
    path, _ = project
    before = (path / "metrics/eval.json").read_bytes()
    update_params(path, {"evaluate": {"rrf_k": 30}})
    ran = repro(path)
    # The card quotes the evaluation: it reruns exactly when the evaluation's metrics changed (the RRF constant
    # changes nothing when a convex fusion was chosen on val).
    changed = (path / "metrics/eval.json").read_bytes() != before
    assert ran == ["check_params", "evaluate"] + (["model_card"] if changed else [])


def test_questions_param_reruns_questions_train_evaluate(project):
    path, _ = project
    update_params(path, {"questions": {"seed": 7}})
    ran = repro(path)
    # seed_recipe reads the training questions too (it writes a note only, being off); DVC may order
    # it before or after train.
    assert ran[:2] == ["check_params", "questions"] and ran[-1] == "model_card"
    assert sorted(ran[2:-1]) == ["evaluate", "export", "seed_recipe", "train"]


def test_exp_run_of_model_knobs_reruns_only_model_stages_and_keeps_floats(project):
    path, _ = project
    # A model knob (read by train and evaluate) and a train knob in one experiment: only the model stages rerun.
    result = run(["dvc", "exp", "run", "-S", "train.learning_rate=1e-5", "-S", "model.max_seq_length=80"], path)
    ran = stages_run(result.stdout)
    # evaluate and export both read the new model; DVC may run either first. The card comes last.
    assert ran[:2] == ["check_params", "train"] and sorted(ran[2:4]) == ["evaluate", "export"] and ran[4:] == ["model_card"]
    assert "1e-05" in (path / "params.yaml").read_text() and "max_seq_length: 80" in (path / "params.yaml").read_text()
    train = read_json(path / "metrics/train.json")
    assert train["learning_rate"] == pytest.approx(1e-5) and isinstance(train["learning_rate"], float)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "exp applied"], path)


def test_seed_recipe_row_reruns_only_its_stage_and_evaluate(project):
    path, _ = project
    trained = (path / "models/finetuned/model.safetensors").read_bytes()
    questions = (path / "data/questions/train.json").read_bytes()
    update_params(path, {"seed_recipe": {"enabled": True, "epochs": 1}})  # one epoch: the row, not its quality
    assert repro(path) == ["check_params", "seed_recipe", "evaluate", "model_card"]  # never train or questions
    metrics = read_json(path / "metrics/eval.json")
    assert set(metrics["seed_recipe"]) >= {"hit@1", "hit@5", "mrr@10", "ndcg@10"}
    assert metrics["seed_recipe"] != metrics["base"] and metrics["seed_recipe"] != metrics["finetuned"]
    assert (path / "models/seed_recipe/modules.json").is_file()
    assert (path / "models/finetuned/model.safetensors").read_bytes() == trained
    assert (path / "data/questions/train.json").read_bytes() == questions
    assert not (path / "models/.seed-recipe-work").exists() and not (path / "checkpoints").exists()
    update_params(path, {"seed_recipe": {"enabled": False}})
    # Switched off again: DVC may restore the earlier "off" outputs (seed_recipe's note, the card) from its
    # run cache instead of running those stages; evaluate runs, train and questions never do.
    ran = repro(path)
    assert ran[0] == "check_params" and "evaluate" in ran and set(ran) <= {"check_params", "seed_recipe", "evaluate", "model_card"}
    assert "seed_recipe" not in read_json(path / "metrics/eval.json")
    assert [p.name for p in (path / "models/seed_recipe").iterdir()] == ["DISABLED.txt"]


def test_bad_param_stops_before_any_output_is_touched(project):
    path, _ = project
    before = (path / "dvc.lock").read_text()
    weights = (path / "models/finetuned/model.safetensors").read_bytes()
    for command in (["dvc", "exp", "run", "-S", "train.batch_size=abc"], ["dvc", "repro"]):
        if command[1] == "repro":
            update_params(path, {"train": {"batch_size": "lots"}})
        result = run(command, path, check=False)
        said = result.stderr + result.stdout
        assert result.returncode != 0, said
        assert "ERROR in stage 'check_params'" in said and "train.batch_size" in said, said
        assert "Traceback" not in said
        assert stages_run(result.stdout) == ["check_params"]  # nothing after it ran, nothing was removed
        # Only params.yaml differs from the last commit: no tracked metric or curve was deleted.
        assert run(["git", "status", "--porcelain"], path).stdout.split() == ["M", "params.yaml"]
        assert (path / "models/finetuned/model.safetensors").read_bytes() == weights
        assert (path / "dvc.lock").read_text() == before
        run(["git", "checkout", "--", "params.yaml"], path)
    assert "up to date" in run(["dvc", "status"], path).stdout