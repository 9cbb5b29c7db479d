"""Query and document prompts: the text E5, BGE, Qwen3-Embedding, GTE or Nomic models expect before each input.

``model.query_prompt`` / ``model.document_prompt`` are ``auto`` by default: the base model's own, from
its ``config_sentence_transformers.json`` (E5: ``query: `` / ``passage: ``; none for MiniLM). The same
two strings are used everywhere a text is encoded (training columns, validation, evaluation, search,
the llama-index check, hard-negative mining) and are saved in the fine-tuned model's config, so that
``SentenceTransformer("models/finetuned").encode_query(...)`` / ``.encode_document(...)`` give what
the evaluation measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
CONFIG_FILE = "config_sentence_transformers.json"
# sentence-transformers' encode_document takes the first of these prompt names that a model has.
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


@dataclass(frozen=True)
class Prompts:
    query: str = ""
    document: str = ""

    def for_training(self, columns: list[str]) -> dict[str, str]:
        """The Trainer's ``prompts`` per dataset column: the query prompt for anchors, the document one for the rest."""
        chosen = {column: self.query if column == "anchor" else self.document for column in columns}
        return {column: prompt for column, prompt in chosen.items() if prompt}

    def as_model_config(self) -> dict[str, str]:
        """The ``prompts`` of a saved model: the names ``encode_query`` and ``encode_document`` look up."""
        return {"query": self.query, "document": self.document}

    def describe(self) -> str:
        return f"query prompt {self.query!r}, document prompt {self.document!r}"


NO_PROMPTS = Prompts()


def model_prompts(model_dir: Path) -> Prompts:
    """The prompts a sentence-transformers folder declares (none when it declares none)."""
    config = model_dir / CONFIG_FILE
    prompts = json.loads(config.read_text(encoding="utf-8")).get("prompts") or {} if config.is_file() else {}
    document = next((prompts[name] for name in DOCUMENT_PROMPT_NAMES if prompts.get(name)), "")
    return Prompts(query=prompts.get("query") or "", document=document)


def resolve_prompts(query_prompt: str, document_prompt: str, base_dir: Path) -> Prompts:
    """``model.query_prompt`` / ``model.document_prompt`` with ``auto`` replaced by the base model's own."""
    own = model_prompts(base_dir) if AUTO in (query_prompt, document_prompt) else Prompts()
    return Prompts(query=own.query if query_prompt == AUTO else query_prompt,
                   document=own.document if document_prompt == AUTO else document_prompt)


def save_prompts(model, prompts: Prompts) -> None:
    """Make ``prompts`` the model's own before it is saved (no default prompt: plain ``encode`` adds none)."""
    model.prompts = {**{k: v for k, v in model.prompts.items() if k not in DOCUMENT_PROMPT_NAMES},
                     **prompts.as_model_config()}
    model.default_prompt_name = None
