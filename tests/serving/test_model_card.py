"""The model card carries the run's evidence, from the run's own metrics, and nothing that differs between runs."""

from __future__ import annotations

import json
import re

import pytest

from stages.lib.models.prompts import Prompts
from stages.lib.serving.model_card import CardInputs, build_card, split_front_matter
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
