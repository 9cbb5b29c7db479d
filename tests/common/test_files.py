import pytest

from stages.lib.common.files import replacing_directory, write_json


def test_failed_block_keeps_the_old_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError), replacing_directory(target) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("crash while saving")
    assert (target / "weights").read_text() == "old"
    assert not (tmp_path / "model.tmp").exists()


def test_successful_block_replaces_the_directory(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale").write_text("x")
    with replacing_directory(target) as staging:
        (staging / "weights").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]


def test_write_json_leaves_no_temporary_files(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
