"""Extra training documents: read into train-only chunks, refused with one clear message when they cannot be."""

from __future__ import annotations

import pytest

from stages.lib.common.errors import UserError
from stages.lib.documents.chunking import make_chunks
from stages.lib.documents.extra_documents import EXTRA_SOURCE_PREFIX, load_extra_chunks
from stages.lib.documents.extra_manifest import write_manifest
from stages.lib.documents.law_pdf import law_database
from stages.lib.documents.readers import load_documents
from stages.lib.documents.related_laws import related_laws


def _rules(name: str, count: int) -> str:
    return f"# {name}\n\n" + "\n\n".join(f"The {name} requires record {i} to be kept for {i + 2} years." for i in range(count))


@pytest.fixture
def folders(tmp_path):
    target, extra = tmp_path / "docs", tmp_path / "extra"
    target.mkdir()
    extra.mkdir()
    (target / "a.md").write_text(_rules("broker rule", 40), encoding="utf-8")
    (extra / "a.md").write_text(_rules("fund rule", 40), encoding="utf-8")  # same file name, other text
    return target, extra


def _load(extra, target):
    documents, _ = load_documents(target)
    return load_extra_chunks(extra, target, documents, 40, 0, 4)


def test_extra_chunks_are_all_training_material_with_their_own_ids(folders):
    target, extra = folders
    chunks, documents = _load(extra, target)
    target_chunks, _ = make_chunks(load_documents(target)[0], 40, 0, 4, 42, 0.3, 0.3)
    assert len(documents) == 1 and len(chunks) > 5
    assert {chunk.split for chunk in chunks} == {"train"}
    assert all(chunk.source == EXTRA_SOURCE_PREFIX + "a.md" for chunk in chunks)
    assert not {c.id for c in chunks} & {c.id for c in target_chunks}
    assert all("fund rule" in chunk.text for chunk in chunks)


def test_the_sample_stages_empty_folder_is_no_extra_documents(folders, tmp_path):
    target, _ = folders
    empty = tmp_path / "sample_extra"
    empty.mkdir()
    write_manifest(empty, [])
    assert _load(empty, target) == ([], [])


@pytest.mark.parametrize("case", ["missing", "empty", "target", "inside_target", "holds_target", "same_text"])
def test_unusable_extra_folder_names_the_key_and_the_fix(folders, tmp_path, case):
    target, extra = folders
    if case == "missing":
        extra = tmp_path / "nowhere"
    elif case == "empty":
        extra = tmp_path / "empty"
        extra.mkdir()
    elif case == "target":
        extra = target
    elif case == "inside_target":
        extra = target / "more"
        extra.mkdir()
        (extra / "b.md").write_text(_rules("other", 30), encoding="utf-8")
    elif case == "holds_target":
        extra = tmp_path
    else:
        (extra / "copy.md").write_text((target / "a.md").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(UserError) as error:
        _load(extra, target)
    message = str(error.value)
    assert "corpus.extra_documents_dir" in message
    expected = {"missing": "not a folder", "empty": "no supported documents", "target": "target corpus",
                "inside_target": "target corpus", "holds_target": "target corpus", "same_text": "copy.md"}[case]
    assert expected in message


def test_related_laws_are_the_targets_department_ranked_by_text():
    database = law_database()
    ranked = related_laws(database, ["中华人民共和国劳动合同法"], 5, exclude=("中华人民共和国工会法",))
    names = [law.name for law in ranked]
    # The Labor Law is the Labor Contract Law's closest relative by any reading; the union law was excluded.
    assert names[0] == "中华人民共和国劳动法"
    assert "中华人民共和国劳动合同法" not in names and "中华人民共和国工会法" not in names
    assert {law.department for law in ranked} == {"社会法"}
    assert [law.similarity for law in ranked] == sorted((law.similarity for law in ranked), reverse=True)
    anywhere = related_laws(database, ["中华人民共和国劳动合同法"], 40, same_department=False)
    assert len({law.department for law in anywhere}) > 1


def test_related_laws_refuses_an_unknown_target():
    with pytest.raises(UserError, match="not current laws"):
        related_laws(law_database(), ["中华人民共和国劳动合同"], 3)
