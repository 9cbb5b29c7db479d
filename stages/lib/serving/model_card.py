"""The model card that ships with ``models/finetuned``: the run's own evidence in front of the
sentence-transformers card.

Everything in it comes from the run's params and metrics files, never from a clock: two identical
runs give an identical card, so a rerun that changes nothing leaves ``dvc status`` clean. Wall times
stay in ``metrics/train.json`` for that reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stages.lib.common.params import Params
from stages.lib.models.prompts import Prompts
from stages.lib.retrieval.verdict import PEOPLES_WORD_OVERLAP, judge_notice, verdict_lines

GOLDEN_PREFIX = "golden_test_"
RETRIEVERS = ("base", "seed_recipe", "finetuned", "bm25", "hybrid")
LANGUAGES = {"zh": "Chinese", "en": "English"}
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


def build_card(inputs: CardInputs) -> str:
    front_matter, body = split_front_matter(inputs.sentence_transformers_card)
    sections = [
        _title(inputs),
        _verdict_section(inputs.evaluation),
        _golden_section(inputs.evaluation),
        _synthetic_section(inputs.evaluation),
        _export_section(inputs.export),
        _use_section(inputs.prompts, inputs.params.model.max_seq_length),
        _training_section(inputs),
        "## The sentence-transformers card\n\nWhat sentence-transformers wrote at save time (architecture, "
        "hyperparameters, framework versions), below.\n\n" + _demote_headings(body).strip(),
    ]
    text = "\n\n".join(section.strip() for section in sections if section.strip()) + "\n"
    return (front_matter + "\n" if front_matter else "") + text


def split_front_matter(card: str) -> tuple[str, str]:
    """(the YAML front matter with its ``---`` fences, the rest); no front matter: ("", card)."""
    match = re.match(r"\A---\n.*?\n---\n", card, flags=re.S)
    if not match:
        return "", card
    return match.group(0), card[match.end():]


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
