"""Loading a run for the UI, in the order that keeps the page useful whatever is missing.

The page starts whenever it can show something: a missing model stops only the search (and the labelling view,
which pools with the same retrievers), a missing ``metrics/eval.json`` only the report, and each says which
``dvc repro`` stage makes what it lacks. The retrievers are built once (corpus vectors from the evaluation's
cache, or encoded here with a progress line) and warmed up, so the first question is as fast as the next. The
check against ``dvc.lock`` is DVC's own status (under a second where DVC stored the hashes at its last run; seconds
for large models when it must hash them, as in a copy without ``.dvc/``): it runs in a thread once the page is up,
and the page shows its result when it comes.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.params import Params
from stages.lib.documents.chunk_file import CHUNKS_FILE, load_chunks
from stages.lib.documents.text import detect_language
from stages.lib.retrieval.one_query import EVAL_METRICS, Retrievers
from stages.lib.ui.app import UiState
from stages.lib.ui.known_questions import load_known_questions
from stages.lib.ui.label_view import LabelDesk
from stages.lib.ui.report import build_report
from stages.lib.ui.run_files import QUESTIONS, SEARCH, Problem, missing_outputs, stale_outputs
from stages.lib.ui.search_view import Corpus

log = logging.getLogger(__name__)


def load_state(project: Path, params: Params, models: dict[str, Path], threads: int) -> UiState:
    started = time.perf_counter()
    problems = missing_outputs(models)
    chunks = []
    if CHUNKS_FILE.is_file():
        try:
            chunks = load_chunks()
        except (ValueError, TypeError, KeyError) as error:
            problems.append(Problem(f"{CHUNKS_FILE} cannot be read ({type(error).__name__}): run `dvc repro corpus`.",
                                    "invalid", "corpus", (SEARCH, QUESTIONS)))
    known = load_known_questions(chunks, params.evaluate.golden_sets)
    language = detect_language("".join(c.text for c in chunks[:50])) if chunks else ""  # as BM25 decides it
    report = build_report(known, list(params.train.wise_ft_alphas), language)
    retrievers = None
    if chunks and not any(SEARCH in p.views and p.kind in ("missing", "invalid") for p in problems):
        retrievers = _retrievers(chunks, params, models, threads, problems)
    corpus = Corpus({c.id: c for c in chunks}, retrievers.bm25.language) if retrievers else None
    info = {"models": {name: str(path) for name, path in models.items()}, "max_seq_length": params.model.max_seq_length,
            "golden_sets": list(params.evaluate.golden_sets)}
    if retrievers:
        # evaluated_fusion: evaluate's choice from its metrics, else params.yaml's fixed one, else plain RRF.
        source = ("as the evaluate stage chose" if EVAL_METRICS.is_file() else
                  f"with no {EVAL_METRICS} to say what evaluate chose: params.yaml's fusion, or plain RRF")
        info.update(prompts={"query": retrievers.prompts.query, "document": retrievers.prompts.document},
                    hardware=retrievers.hardware, fusion=f"{retrievers.fusion.describe()}, {source}", threads=threads)
    state = UiState(project, corpus, retrievers, known, report, problems, info,
                    startup_s=round(time.perf_counter() - started, 1))
    # The labelling view pools with the same retrievers, one question at a time with the search (the same lock).
    stopped = [p for p in problems if SEARCH in p.views and p.kind in ("missing", "invalid")]
    unavailable = None if retrievers else (
        " ".join(p.message for p in stopped) or f"{CHUNKS_FILE} holds no chunks: run `dvc repro corpus`.",
        stopped[0].stage if stopped else "corpus")
    state.labelling = LabelDesk(params.labelling, {c.id: c for c in chunks}, retrievers, state.search_lock, unavailable,
                                corpus.language if corpus else language)
    return state


def _retrievers(chunks, params: Params, models: dict[str, Path], threads: int, problems: list[Problem]) -> Retrievers | None:
    try:
        log.info("loading the models (%s) and the corpus vectors", ", ".join(str(p) for p in models.values()))
        retrievers = Retrievers(chunks, params, models, label="ui")
        retrievers.load()
        import torch

        # One question at a time, a handful of tokens: one thread answers it without waiting on a second core that
        # another process may hold (benchmarks/ui_latency.py measures both).
        torch.set_num_threads(threads)
        retrievers.rank(retrievers.window(chunks[0].text[:40]).text, 10)  # warm-up: first calls allocate
        return retrievers
    except UserError as error:
        problems.append(Problem(f"{error} Until then the page cannot search.", "invalid", None, (SEARCH,)))
    except Exception as error:  # weights that do not load (a damaged file, another library version)
        which = " or ".join(str(p) for p in models.values())
        problems.append(Problem(f"The models could not be loaded ({type(error).__name__}: {str(error)[:200]}): check "
                                f"{which}; `dvc checkout` restores the pipeline's, `dvc repro` remakes them.", "invalid",
                                None, (SEARCH,)))
    return None


def check_in_background(state: UiState, on_done=None) -> threading.Thread:
    """Compare the outputs with ``dvc.lock`` in a thread; ``state.stale`` is None until it is done."""

    def run() -> None:
        try:
            state.stale = stale_outputs()
        except Exception as error:  # a check that cannot run must not take the page down
            state.stale = [Problem(f"The check against dvc.lock failed ({type(error).__name__}: {error}); `dvc status` "
                                   "tells what is out of date.", "note")]
        if on_done:
            on_done(state.stale)

    thread = threading.Thread(target=run, name="ui-stale-check", daemon=True)
    thread.start()
    return thread
