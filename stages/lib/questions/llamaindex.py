"""The seed's question generator: LlamaIndex's own ``generate_qa_embedding_pairs``, as a baseline.

``questions.generator: llamaindex`` runs the function this project started from, with its default
prompt (an English "Teacher/Professor" quiz prompt) and its default of 2 questions per chunk, one
blocking request at a time, through the same OpenAI-compatible LLM class and the same
``OPENAI_API_KEY`` / ``OPENAI_API_BASE`` as the ``llm`` generator, with the client's own default
retries (honouring ``Retry-After``), as a user of the recipe would have them. Our split stays: each split's
questions come from that split's chunks only, so the comparison is as leak-free as ours.

What differs from running it by hand, and why:

* Its query ids are fresh ``uuid4`` values on every run; the pipeline's files use our stable
  text-hash ids instead, so a rerun with the same answers writes byte-identical files.
* Its progress file is written after every chunk (``save_every=1``) under ``data/llm_cache/``
  (a persistent DVC output) and named by what determines the answers, so a killed run resumes
  where it stopped. The function resumes by counting the chunks already in that file, which holds
  because the chunks are always given in the same order.
* A chunk whose request still fails after the function's own 3 attempts stops the stage (its
  ``on_failure="fail"``) with the answers so far kept, instead of silently skipping the chunk.

``benchmarks/llm_concurrency.py`` runs the function exactly as it ships (save interval included)
next to our generator.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from stages.lib.common.endpoint import Endpoint, load_endpoint
from stages.lib.common.errors import UserError
from stages.lib.common.params import LLMParams
from stages.lib.common.progress import progress
from stages.lib.documents.chunking import SPLITS, Chunk
from stages.lib.questions.llm import LLMRun
from stages.lib.questions.llm_client import make_llm
from stages.lib.questions.qa_dataset import GeneratedQuery
from stages.lib.questions.response_store import request_key

log = logging.getLogger(__name__)

SEED_QUESTIONS_PER_CHUNK = 2  # generate_qa_embedding_pairs' default
SEED_RETRY_LIMIT = 3  # its default attempts per chunk
STYLE = "question"


def progress_file(store_dir: Path, split: str, model: str, params: LLMParams) -> Path:
    """Where the function keeps its answers for one split: named by everything that determines them."""
    key = request_key(generator="llamaindex.generate_qa_embedding_pairs", split=split, model=model,
                      questions_per_chunk=SEED_QUESTIONS_PER_CHUNK, temperature=params.temperature,
                      max_tokens=params.max_tokens)
    return store_dir / f"llamaindex-{split}-{key[:16]}.json"


def _count_calls(llm, on_call: Callable[[], None]):
    """``llm`` with ``complete`` reporting each finished call (for a progress bar); the function itself
    only draws a tqdm bar, which the stages keep off. Set on the instance, so the class is untouched."""
    complete = llm.complete

    def counted(*args, **kwargs):
        result = complete(*args, **kwargs)
        on_call()
        return result

    object.__setattr__(llm, "complete", counted)
    return llm


def generate_with_llamaindex(chunks: list[Chunk], params: LLMParams, model: str, store_dir: Path,
                             endpoint: Endpoint | None = None) -> LLMRun:
    from llama_index.core.schema import TextNode
    from llama_index.finetuning import generate_qa_embedding_pairs

    endpoint = endpoint or load_endpoint("questions.generator = 'llamaindex'")
    by_split: dict[str, list[GeneratedQuery]] = {}
    stats: dict[str, float] = {"llm_requests": len(chunks), "llm_requests_sent_this_run": 0,
                               "llm_requests_from_store": 0}
    store_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        split_chunks = [c for c in chunks if c.split == split]
        if not split_chunks:
            continue
        path = progress_file(store_dir, split, model, params)
        done = _chunks_in(path)
        bar = progress(len(split_chunks), f"[questions] llamaindex {split}", unit="chunk", initial=done)
        sent = [0]

        def tick(bar=bar, sent=sent) -> None:
            sent[0] += 1
            bar.update(1)

        llm = _count_calls(make_llm(endpoint, model, params.temperature, params.max_tokens, params.timeout_s,
                                    client_retries=True), tick)
        nodes = [TextNode(id_=chunk.id, text=chunk.text) for chunk in split_chunks]
        try:
            dataset = generate_qa_embedding_pairs(
                nodes, llm, num_questions_per_chunk=SEED_QUESTIONS_PER_CHUNK, retry_limit=SEED_RETRY_LIMIT,
                on_failure="fail", save_every=1, output_path=str(path), verbose=False,
            )
        except RuntimeError as error:
            raise UserError(
                f"LlamaIndex's generate_qa_embedding_pairs stopped on the {split} split: {error} The answers "
                f"received so far are kept in {path}; `dvc repro` resumes after them. Check OPENAI_API_KEY, "
                f"OPENAI_API_BASE and the model name {model!r} (params.yaml 'questions.llm.model' or LLM_MODEL)."
            ) from None
        finally:
            bar.close()
        stats["llm_requests_sent_this_run"] += sent[0]
        stats["llm_requests_from_store"] += done
        # The function's own uuid4 ids are dropped: build_dataset gives every query its stable text-hash id.
        by_split[split] = [GeneratedQuery(text, STYLE, dataset.relevant_docs[qid][0])
                           for qid, text in dataset.queries.items()]
    return LLMRun(by_split, stats)


def _chunks_in(path: Path) -> int:
    """How many chunks the function's progress file already holds (it resumes after them).

    The function rewrites that file in place, so a kill during a write can leave it cut short; it
    would then fail to load it. Such a file is moved aside (kept for inspection) and the split starts over.
    """
    if not path.is_file():
        return 0
    try:
        return len(json.loads(path.read_text(encoding="utf-8"))["corpus"])
    except (OSError, ValueError, KeyError, TypeError):
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        log.warning(f"WARNING: {path} could not be read; moved to {aside.name}, this split starts over.")
        return 0
