"""Golden-set labels resolve to chunk ids whatever the chunking, and bad files fail with the line named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import Chunk
from stages.lib.retrieval.golden import article_chunks, golden_datasets, load_golden, resolve


def chunk(cid: str, text: str, position: int, source: str = "law.pdf") -> Chunk:
    return Chunk(cid, text, source, "test", "zh", "", position, len(text))


CHUNKS = [
    chunk("c0", "第一条 为了规范证券发行和交易行为，制定本法。\n第二条 在中华人民共和国境内，股票、公司债券", 0),
    chunk("c1", "和存托凭证的发行和交易，适用本法；依照本法第五十条的规定执行。", 1),
    chunk("c2", "第三条 证券的发行、交易活动，必须遵循公开、公平、公正的原则。", 2),
    chunk("e0", "Article 5 A broker shall keep client assets apart.\nArticle 6 Records are kept ten years.", 0, "rules.md"),
]


def write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def test_an_article_covers_every_chunk_it_spans_and_references_are_not_heads():
    covered = article_chunks(CHUNKS)
    assert covered[("law.pdf", "第一条")] == {"c0"}
    assert covered[("law.pdf", "第二条")] == {"c0", "c1"}  # continues into the next chunk
    assert covered[("law.pdf", "第三条")] == {"c2"}
    assert ("law.pdf", "第五十条") not in covered  # "依照本法第五十条" is a reference, not an article
    assert covered[("rules.md", "Article 6")] == {"e0"}


def test_articles_and_evidence_resolve_within_their_source(tmp_path):
    path = write(tmp_path, [
        {"id": "q1", "query": "境外发行的存托凭证适用吗", "split": "test", "articles": ["第二条"], "source": "law.pdf"},
        {"id": "q2", "query": "how long are records kept", "split": "val", "evidence": ["kept ten  years"]},
        {"id": "q3", "query": "三公原则", "split": "test", "articles": ["第三条"], "evidence": ["公开、公平"]},
    ])
    golden = load_golden(path)
    assert resolve(golden, CHUNKS) == {"q1": ["c0", "c1"], "q2": ["e0"], "q3": ["c2"]}
    datasets = golden_datasets(golden, CHUNKS)
    assert set(datasets) == {("test", "zh"), ("val", "en")}  # the language is detected when not given
    assert datasets[("test", "zh")].relevant_docs == {"q1": ["c0", "c1"], "q3": ["c2"]}
    assert len(datasets[("test", "zh")].corpus) == len(CHUNKS)  # retrieval is over the whole corpus


@pytest.mark.parametrize(("row", "needles"), [
    ({"id": "q", "query": "x", "split": "test", "articles": ["第九条"]}, ["line 1", "'q'", "第九条", "starts no line"]),
    ({"id": "q", "query": "x", "split": "test", "evidence": ["不在文中"]}, ["line 1", "不在文中", "in no chunk"]),
    ({"id": "q", "query": "x", "split": "test", "articles": ["第一条"], "source": "other.pdf"}, ["other.pdf", "not in the corpus"]),
])
def test_a_label_that_matches_nothing_names_the_file_line_and_label(tmp_path, row, needles):
    path = write(tmp_path, [row])
    with pytest.raises(UserError) as caught:
        resolve(load_golden(path), CHUNKS)
    assert str(path) in str(caught.value)
    for needle in needles:
        assert needle in str(caught.value)


@pytest.mark.parametrize(("rows", "needle"), [
    ([{"id": "q", "query": "x", "split": "train", "articles": ["第一条"]}], "key 'split' is 'train'"),
    ([{"id": "q", "query": "x", "split": "test", "articles": ["第一条"]}] * 2, "id 'q' is used twice"),
    ([{"id": "q", "query": "x", "split": "test"}], "'articles'"),
    ([{"id": "q", "query": "x", "split": "test"}], "'passages'"),
    ([{"id": "q", "split": "test", "articles": ["第一条"]}], "missing or empty key(s) ['query']"),
])
def test_bad_rows_are_refused(tmp_path, rows, needle):
    with pytest.raises(UserError, match="line"):
        load_golden(write(tmp_path, rows))
    with pytest.raises(UserError) as caught:
        load_golden(write(tmp_path, rows))
    assert needle in str(caught.value)


def passage(chunk: Chunk) -> dict:
    return {"chunk": chunk.id, "source": chunk.source, "text": chunk.text}


def test_labelled_passages_resolve_by_id_or_by_text_and_unanswered_questions_are_kept_unscored(tmp_path):
    rechunked = [chunk("n0", CHUNKS[0].text + CHUNKS[1].text, 0), chunk("n1", CHUNKS[2].text, 1), CHUNKS[3]]
    path = write(tmp_path, [
        {"id": "p1", "query": "存托凭证", "split": "val", "passages": [passage(CHUNKS[1])], "note": "seen in the UI"},
        {"id": "p2", "query": "三公原则", "split": "test", "passages": [passage(CHUNKS[2]), passage(CHUNKS[3])]},
        {"id": "p3", "query": "证券法管外国股票吗", "split": "test", "no_relevant_chunk": True},
    ])
    golden = load_golden(path)
    assert [q.no_relevant_chunk for q in golden.questions] == [False, False, True]
    assert resolve(golden, CHUNKS) == {"p1": ["c1"], "p2": ["c2", "e0"]}
    assert resolve(golden, rechunked) == {"p1": ["n0"], "p2": ["n1", "e0"]}  # found again by their text
    datasets = golden_datasets(golden, CHUNKS)
    assert set(datasets[("test", "zh")].queries) == {"p2"}  # the unanswered question is not scored


def test_a_labelled_passage_whose_text_is_gone_names_the_question_and_how_to_relabel(tmp_path):
    path = write(tmp_path, [{"id": "p1", "query": "q", "split": "test", "passages": [passage(CHUNKS[2])]}])
    edited = [*CHUNKS[:2], chunk("c2", "第三条 本条已修改。", 2), CHUNKS[3]]
    with pytest.raises(UserError) as caught:
        resolve(load_golden(path), edited)
    message = str(caught.value)
    for needle in (str(path), "line 1", "'p1'", "第三条证券的发行", "no longer in the corpus", "/label"):
        assert needle in message


@pytest.mark.parametrize(("row", "needle"), [
    ({"passages": "c1"}, "key 'passages' must be a list"),
    ({"passages": [{"chunk": "c1"}]}, "non-empty text"),
    ({"passages": [{"text": "x", "source": 3}]}, "key 'passages' must be a list"),
    ({"no_relevant_chunk": True, "articles": ["第一条"]}, "keep one of them"),
    ({"no_relevant_chunk": "yes"}, "key 'no_relevant_chunk' is 'yes'; use true or false"),
])
def test_bad_passage_labels_are_refused_with_the_line(tmp_path, row, needle):
    with pytest.raises(UserError) as caught:
        load_golden(write(tmp_path, [{"id": "q", "query": "x", "split": "test", **row}]))
    assert "line 1" in str(caught.value) and needle in str(caught.value)


def test_golden_sets_may_be_named_by_a_pattern_and_a_set_about_other_documents_is_not_about_this_corpus(tmp_path,
                                                                                                        monkeypatch):
    from stages.lib.retrieval.golden import golden_files, is_about

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/golden").mkdir(parents=True)
    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (tmp_path / "data/golden" / name).write_text("", encoding="utf-8")
    assert golden_files(["data/golden/*.jsonl", "data/golden/a.jsonl"]) == [Path("data/golden/a.jsonl"),
                                                                           Path("data/golden/b.jsonl")]
    assert golden_files(["data/nothing/*.jsonl"]) == []
    assert golden_files(["data/golden/missing.jsonl"]) == [Path("data/golden/missing.jsonl")]  # loading it says so
    # An absolute pattern (pathlib alone refuses one) finds the same files.
    assert golden_files([str(tmp_path / "data/golden/*.jsonl")]) == [tmp_path / "data/golden/a.jsonl",
                                                                     tmp_path / "data/golden/b.jsonl"]
    labelled = load_golden(write(tmp_path, [{"id": "q", "query": "x", "split": "test", "passages": [passage(CHUNKS[3])]}]))
    assert is_about(labelled, {"rules.md"}) and not is_about(labelled, {"law.pdf"})
    articles = load_golden(write(tmp_path, [{"id": "q", "query": "x", "split": "test", "articles": ["第一条"]}]))
    assert is_about(articles, {"anything.pdf"})  # no document named: about any corpus


@pytest.mark.slow
@pytest.mark.parametrize(("law", "golden_file", "articles"), [
    ("中华人民共和国证券法", "securities_law.jsonl", 226),
    ("中华人民共和国劳动合同法", "labor_contract_law.jsonl", 98),
])
def test_the_bundled_golden_sets_resolve_on_their_laws_chunks(tmp_path, law, golden_file, articles):
    from stages.lib.documents.chunk_file import load_chunks
    from tests.helpers import REPO_ROOT, make_project, stage_run

    project = make_project(tmp_path / "project", {"sample": {"laws": [law]}}, git=False)
    for stage in ("sample", "corpus"):
        stage_run(stage, project, check=True)
    chunks = load_chunks(project / "data/corpus/chunks.jsonl")
    golden = load_golden(REPO_ROOT / "data/golden" / golden_file)
    relevant = resolve(golden, chunks)
    assert len(relevant) == len(golden.questions) and all(relevant.values())
    assert len(article_chunks(chunks)) == articles  # every article of the law starts a line somewhere


def test_a_line_separator_inside_a_question_does_not_cut_its_line(tmp_path):
    # json.dumps(ensure_ascii=False) writes U+2028 as it is; the row is still one line of the file.
    path = write(tmp_path, [{"id": "q1", "query": "第一条\u2028第二条", "split": "test", "articles": ["第一条"]},
                            {"id": "q2", "query": "x\r", "split": "val", "articles": ["第三条"]}])
    golden = load_golden(path)
    assert [(q.id, q.line) for q in golden.questions] == [("q1", 1), ("q2", 2)] and "\u2028" in golden.questions[0].query
