"""One question against everything the pipeline built: what ``python -m stages.search`` and ``python -m stages.ui`` do.

It owns reading the pipeline's outputs without changing them (the models, the ``evaluate`` stage's
vector cache opened read-only, the fusion that stage chose from its metrics), ranking a query with
every retriever (base, fine-tuned, BM25, their hybrid; ``Retrievers`` builds them once, so a long-lived
caller such as the UI pays for loading once), the part of a long question the models read, finding the
query's labelled chunks when a question set holds it (synthetic splits first, then golden sets, matched
on normalised text), and laying the rankings out side by side in terminal columns. Argument parsing and
printing stay in the ``search`` module.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.lib.common.errors import UserError
from stages.lib.common.files import read_json
from stages.lib.common.params import Params
from stages.lib.documents.chunking import Chunk
from stages.lib.models.hardware import encoding_batch_size, resolve_hardware
from stages.lib.models.loading import count_without_length_warning
from stages.lib.models.prompts import resolve_prompts
from stages.lib.questions.qa_dataset import QADataset, normalize_query
from stages.lib.retrieval.dense_encoding import LazySentenceEncoder, encode_texts
from stages.lib.retrieval.fusion import RRF, UNTUNED, Fusion, candidates, fuse
from stages.lib.retrieval.golden import golden_datasets, golden_files, is_about, load_golden
from stages.lib.retrieval.rankers import BM25Index, Ranking, dense_rank
from stages.lib.retrieval.vector_cache import open_model_cache_read_only

# Each model with the stage that writes it, so a missing one can name what to run.
MODELS = {"base": (Path("models/base"), "base_model"), "finetuned": (Path("models/trained"), "train")}
QUESTION_FILES = {split: Path(f"data/questions/{split}.json") for split in ("train", "val", "test")}
EVAL_METRICS = Path("metrics/eval.json")
EMBEDDING_CACHE_DIR = Path("data/embedding_cache")
QUERY_ID = "query"


@dataclass(frozen=True)
class Label:
    set_name: str
    relevant: frozenset[str]


def find_label(query: str, chunks: list[Chunk], params: Params) -> Label | None:
    """The labelled chunks of ``query`` if a question set holds it (pipeline splits first, then golden sets)."""
    wanted = normalize_query(query)
    for split, path in QUESTION_FILES.items():
        if path.is_file():
            found = _find(QADataset.load(path), wanted)
            if found:
                return Label(f"the synthetic {split} split", found)
    sources = {c.source for c in chunks}
    for file in golden_files(params.evaluate.golden_sets):
        golden = load_golden(file)
        matches = [q for q in golden.questions if normalize_query(q.query) == wanted]
        if not matches or not is_about(golden, sources):
            continue
        for (split, _), dataset in golden_datasets(golden, chunks).items():
            found = _find(dataset, wanted)
            if found:
                return Label(f"golden set {file} ({split})", found)
    return None


def _find(dataset: QADataset, wanted: str) -> frozenset[str] | None:
    for qid, text in dataset.queries.items():
        if normalize_query(text) == wanted:
            return frozenset(dataset.relevant_docs.get(qid, []))
    return None


class _Encoder(LazySentenceEncoder):
    """A lazily loaded model whose loading (and tokenizer) can also be asked for outright."""

    def model(self):
        if self._model is None:
            self._model = self._load()
            count_without_length_warning(self._model.tokenizer)  # it counts long questions' tokens
        return self._model


@dataclass(frozen=True)
class Window:
    """What of a question the dense models read: at most ``max_seq_length`` tokens, query prompt and special tokens
    included (the rest is cut, as the evaluation's encoding cut it)."""

    text: str  # the question as the models read it (all of it when it fits)
    tokens: int  # tokens of the whole question with the query prompt and special tokens
    max_seq_length: int

    @property
    def cut(self) -> bool:
        return self.tokens > self.max_seq_length


class Retrievers:
    """Every retriever over one corpus, built once: both models with their corpus vectors, BM25, the evaluated fusion.

    Corpus vectors come from the ``evaluate`` stage's cache (opened read-only) and are encoded, with a progress
    line, only where it lacks them. The prompts, precision and fusion are the ones ``evaluate`` used, so a
    question ranks here as it ranked there.
    """

    def __init__(self, chunks: list[Chunk], params: Params, models: dict[str, Path] | None = None,
                 label: str = "search") -> None:
        models = models or {name: path for name, (path, _) in MODELS.items()}
        for path in models.values():
            if not (path / "modules.json").is_file():
                stage = next((stage for default, stage in MODELS.values() if default == path), None)
                fix = f"run `dvc repro {stage}`" if stage else "point at a sentence-transformers folder such as models/trained"
                raise UserError(f"{path} is not a sentence-transformers folder (it has no modules.json): {fix}.")
        corpus = {c.id: c.text for c in chunks}
        self.corpus_ids = list(corpus)
        # The precision and the prompts `evaluate` encoded with, so its cached corpus vectors are the ones read here.
        hardware = resolve_hardware(params.compute.device, params.compute.precision, model_dir=models["base"])
        self.hardware = hardware.describe()
        self.prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, models["base"])
        self.max_seq_length = params.model.max_seq_length
        self.encoders: dict[str, _Encoder] = {}
        self.doc_vectors: dict[str, np.ndarray] = {}
        for name, path in models.items():
            encoder = _Encoder(path, hardware.device, params.model.max_seq_length,
                               encoding_batch_size(params.evaluate.batch_size, hardware.device), hardware.precision)
            # Read-only: vectors `evaluate` stored are reused, new ones are kept in memory (the DVC output stays as it is).
            cache = open_model_cache_read_only(EMBEDDING_CACHE_DIR, path, params.model.max_seq_length, hardware.precision)
            self.doc_vectors[name] = encode_texts(list(corpus.values()), encoder, cache, f"[{label}] encode corpus ({name})",
                                                  prompts=self.prompts.document)
            self.encoders[name] = encoder
        self.bm25 = BM25Index(corpus)
        self.fusion = evaluated_fusion(params)
        self.rrf_k = params.evaluate.rrf_k

    def load(self) -> None:
        """Load every model now (a run whose corpus vectors were all cached has not), so no question waits for it."""
        for encoder in self.encoders.values():
            encoder.model()

    def window(self, query: str) -> Window:
        """The part of ``query`` every dense model reads whole: the shortest of their windows."""
        read, tokens = len(query), 0
        for encoder in self.encoders.values():
            chars, count = _chars_read(encoder.model().tokenizer, self.prompts.query, query, self.max_seq_length)
            read, tokens = min(read, chars), max(tokens, count)
        return Window(query[:read], tokens, self.max_seq_length)

    def rank(self, query: str, depth: int) -> dict[str, Ranking]:
        rankings: dict[str, Ranking] = {}
        for name, encoder in self.encoders.items():
            query_vector = np.asarray(encoder([query], self.prompts.query), dtype=np.float32)
            rankings[name] = dense_rank([QUERY_ID], query_vector, self.corpus_ids, self.doc_vectors[name], depth)
        rankings["bm25"] = self.bm25.rank({QUERY_ID: query}, depth)
        rankings["hybrid"] = fuse(rankings["finetuned"], rankings["bm25"], self.fusion, self.rrf_k, depth)
        return rankings


def _chars_read(tokenizer, prompt: str, query: str, max_tokens: int) -> tuple[int, int]:
    """(characters of ``query`` inside the first ``max_tokens`` tokens of prompt + query, tokens of the whole)."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(prompt + query, add_special_tokens=True, truncation=False, return_offsets_mapping=fast)
    total = len(encoded["input_ids"])
    if total <= max_tokens:
        return len(query), total
    if fast:
        # Special tokens have empty spans; the last character any kept token covers ends what the model read.
        end = max((stop for _, stop in encoded["offset_mapping"][:max_tokens]), default=0)
        return max(0, min(len(query), end - len(prompt))), total
    low, high = 0, len(query)  # a slow tokenizer has no offsets: the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(tokenizer(prompt + query[:middle], add_special_tokens=True, truncation=False)["input_ids"]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return low, total


def rank_all(query: str, chunks: list[Chunk], params: Params, depth: int) -> dict[str, Ranking]:
    return Retrievers(chunks, params).rank(query, depth)


def evaluated_fusion(params: Params) -> Fusion:
    """The fusion `evaluate` chose (from its metrics), else the one params fix, else the untuned one."""
    if EVAL_METRICS.is_file():
        metrics = read_json(EVAL_METRICS)
        if metrics.get("hybrid_fusion") in (RRF, "convex") and isinstance(metrics.get("hybrid_dense_weight"), float | int):
            return Fusion(metrics["hybrid_fusion"], float(metrics["hybrid_dense_weight"]))
    fixed = candidates(params.evaluate.fusion, params.evaluate.hybrid_dense_weight)
    return fixed[0] if len(fixed) == 1 else UNTUNED


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    """``text`` cut and padded to exactly ``width`` terminal columns (CJK characters take two)."""
    out, used = [], 0
    for ch in text:
        w = _display_width(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)


def _cell(chunk: Chunk, score: float, marked: bool, width: int) -> str:
    # "第四章 上市公司的收购" -> "第四章": the numbered part places the chunk, the text says the rest.
    section = chunk.section.split(" > ")[-1]
    head = section.split(" ")[0]
    section = head if len(head) <= 6 else section
    text = " ".join(chunk.text.split())
    return _fit(f"{'*' if marked else ' '}{score:6.3f} {section + ' | ' if section else ''}{text}", width)


def format_side_by_side(rankings: dict[str, Ranking], chunks: dict[str, Chunk], relevant: frozenset[str], k: int,
                        width: int) -> str:
    names = list(rankings)
    lines = ["rank " + " ".join(_fit(name, width) for name in names).rstrip()]
    lines.append("-" * (5 + (width + 1) * len(names) - 1))
    for rank in range(k):
        cells = []
        for name in names:
            ids, scores = rankings[name].get(QUERY_ID, []), rankings[name].scores.get(QUERY_ID, [])
            if rank < len(ids):
                cells.append(_cell(chunks[ids[rank]], scores[rank], ids[rank] in relevant, width))
            else:
                cells.append(_fit("  (nothing)" if name == "bm25" and rank == 0 else "", width))
        lines.append(f"{rank + 1:<4} " + " ".join(cells).rstrip())
    if relevant:
        found = {name: next((i + 1 for i, cid in enumerate(r.get(QUERY_ID, [])) if cid in relevant), None)
                 for name, r in rankings.items()}
        lines.append("first labelled chunk at rank: " + ", ".join(
            f"{name} {rank if rank else '>' + str(len(rankings[name].get(QUERY_ID, [])))}" for name, rank in found.items()))
    return "\n".join(lines)
