"""What a training run starts from: the checks that its inputs exist and its batch splits evenly, and
``build_inputs``, which loads the base model (vocabulary extended and token embeddings frozen as the
params say, prompts attached), the sampled training pairs with their mined hard negatives, and the
bounded validation that model selection scores on (``validation.py``). Heavy libraries are imported inside
the functions, so that a stage importing this module fails fast on a user error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stages.lib.common.cores import cpu_threads
from stages.lib.common.errors import UserError
from stages.lib.common.params import Params, TrainParams
from stages.lib.documents.chunk_file import CHUNKS_FILE, EXTRA_CHUNKS_FILE, load_chunks
from stages.lib.documents.chunking import Chunk
from stages.lib.models.hardware import Hardware
from stages.lib.models.loading import load_sentence_transformer
from stages.lib.models.prompts import Prompts, resolve_prompts, save_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.training.distributed import local_rank
from stages.lib.training.locations import BASE_DIR, TRAIN_QUESTIONS, VAL_QUESTIONS
from stages.lib.training.round_trip import RoundTrip
from stages.lib.training.validation import Validation, validation

log = logging.getLogger(__name__)


def require_inputs() -> None:
    for path in (TRAIN_QUESTIONS, VAL_QUESTIONS, CHUNKS_FILE):
        if not path.is_file():
            raise UserError(f"{path} is missing: run `dvc repro` so the stage that writes it runs.")
    if not BASE_DIR.is_dir():
        raise UserError(f"{BASE_DIR} is missing: run `dvc repro base_model` first.")


def check_batch_split(batch_size: int, processes: int) -> None:
    if batch_size % processes:
        raise UserError(
            f"params.yaml key 'train.batch_size' is {batch_size}, which {processes} processes cannot split evenly "
            f"('train.processes' resolved to {processes}). train.batch_size is the global batch: make it a multiple "
            "of the number of processes."
        )


@dataclass(frozen=True)
class Vocabulary:
    """The share of [UNK] tokens in every training text before and after the vocabulary extension."""

    unk_rate_before: float
    unk_rate_after: float
    tokens_added: int
    embeddings_frozen: bool


@dataclass(frozen=True)
class PairCounts:
    """Training pairs sampled by the budgets, and how many there were to sample from."""

    used: int
    available: int
    extra: int  # of ``used``, from the extra training documents (train.max_extra_pairs)
    extra_available: int


@dataclass
class Built:
    model: object
    train_data: object  # a datasets.Dataset: anchor, positive (and negative) columns
    prompts: Prompts
    vocabulary: Vocabulary
    pairs: PairCounts
    validation: Validation
    round_trip: RoundTrip  # which training questions the round-trip filter kept

    def describe(self, hardware: Hardware) -> list[str]:
        """What the run starts from, in the words the stage logs."""
        v, val = self.vocabulary, self.validation
        threads = cpu_threads()
        where = f"cpu ({threads} thread{'s' if threads > 1 else ''} per process)" if hardware.device == "cpu" else hardware.device
        return [
            f"[UNK] rate {v.unk_rate_before:.1%} -> {v.unk_rate_after:.1%} ({v.tokens_added} tokens added); "
            f"{self.pairs.used} training pairs (of {self.pairs.available}), validation on {val.queries} queries "
            f"x {val.corpus} chunks; {where}, {hardware.precision}, {hardware.processes} process(es)",
            f"{self.prompts.describe()}; " + (
                f"model selection on {val.source}, the base model (step 0) included" if val.chooses else
                f"no golden val about this corpus: the final step is kept ({val.source} is scored for the curve only; "
                "synthetic questions are not a judge)"),
        ]


def build_inputs(params: Params, hardware: Hardware) -> Built:
    """The model (on its device, vocabulary extended if needed), the training pairs and the bounded val evaluator.

    The steps run in this order because two of them draw from the seeded random generator (loading the model and
    growing its vocabulary): reordering them would change the trained weights.
    """
    from datasets import Dataset

    p = params.train
    train_set, val_set = QADataset.load(TRAIN_QUESTIONS), QADataset.load(VAL_QUESTIONS)
    if not train_set.queries:
        raise UserError(f"{TRAIN_QUESTIONS} has no queries: check 'questions.train_styles'.")
    # 1. The base model, with its prompts (every save, best model and checkpoints, carries them).
    model, prompts = _base_model(params, hardware)
    # 2. Round-trip filter, before the vocabulary is extended: the base ranker must be the base model, not one with
    #    new, untrained rows.
    chunks = load_chunks()
    round_trip = _round_trip(train_set, chunks, p, model, prompts, hardware.precision)
    train_set = round_trip.dataset
    # 3. Vocabulary: extended when too much of the text is [UNK]; token embeddings frozen as the params say.
    target_ids = {chunk.id for chunk in chunks}
    vocabulary = _vocabulary(model, train_set, chunks, target_ids, p)
    # 4. Training pairs within the budgets, with their hard negatives.
    columns, pair_counts = _training_columns(model, train_set, target_ids, p, prompts, hardware.precision)
    return Built(
        model=model,
        train_data=Dataset.from_dict(columns),
        prompts=prompts,
        vocabulary=vocabulary,
        pairs=pair_counts,
        # 5. The val questions that score every checkpoint.
        validation=validation(chunks, val_set, params, hardware, prompts),
        round_trip=round_trip,
    )


def _base_model(params: Params, hardware: Hardware):
    model_device = f"cuda:{local_rank()}" if hardware.device == "cuda" else hardware.device
    model = load_sentence_transformer(BASE_DIR, model_device, params.model.max_seq_length)
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, BASE_DIR)
    save_prompts(model, prompts)
    return model, prompts


def _round_trip(train_set: QADataset, chunks: list[Chunk], p: TrainParams, model, prompts: Prompts,
                precision: str) -> RoundTrip:
    from stages.lib.training.round_trip import require_enough_pairs, round_trip_filter

    round_trip = round_trip_filter(train_set, chunks, p.round_trip_filter, p.round_trip_top_k, model, prompts, precision)
    if round_trip.ranker != "none":
        log.info(round_trip.describe())
    require_enough_pairs(round_trip, p.batch_size)
    return round_trip


def _vocabulary(model, train_set: QADataset, chunks: list[Chunk], target_ids: set[str], p: TrainParams) -> Vocabulary:
    from stages.lib.training.vocab import extend_vocabulary, measure_coverage

    # The corpus, then the extra training documents' chunks (train.json's corpus beyond the chunk file), then the
    # questions: the vocabulary must cover every text the model trains on.
    extra_texts = [text for cid, text in train_set.corpus.items() if cid not in target_ids]
    texts = [chunk.text for chunk in chunks] + extra_texts + list(train_set.queries.values())
    before = measure_coverage(model.tokenizer, texts)
    added = extend_vocabulary(model, list(before.missing)) if p.extend_vocab and before.unknown_rate > p.unk_threshold else 0
    after = measure_coverage(model.tokenizer, texts) if added else before
    frozen = p.freeze_token_embeddings is True or (p.freeze_token_embeddings == "auto" and not added)
    if frozen:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    return Vocabulary(unk_rate_before=before.unknown_rate, unk_rate_after=after.unknown_rate, tokens_added=added,
                      embeddings_frozen=frozen)


def _training_columns(model, train_set: QADataset, target_ids: set[str], p: TrainParams, prompts: Prompts,
                      precision: str) -> tuple[dict[str, list[str]], PairCounts]:
    """The anchor / positive (/ negative) columns the Trainer reads, and the pair counts the metrics report."""
    from stages.lib.training.pairs import budgeted_pairs, duplicate_free_shortfall

    budget = budgeted_pairs(train_set, target_ids, p.ict_mask_probability, p.seed, p.max_pairs, p.max_extra_pairs)
    anchors, positives = budget.anchors, budget.positives
    if len(anchors) < p.batch_size:
        raise UserError(
            f"Only {len(anchors)} training pairs, fewer than params.yaml key 'train.batch_size' ({p.batch_size}): "
            "lower the batch size, raise 'train.max_pairs', or add documents/questions."
        )
    columns = {"anchor": anchors, "positive": positives}
    if p.hard_negatives:
        columns["negative"] = _hard_negatives(model, train_set, anchors, positives, p, prompts, precision)
    shortfall = duplicate_free_shortfall(columns, p.batch_size) if p.duplicate_free_batches else None
    if shortfall:
        distinct, needed = shortfall
        raise UserError(
            f"params.yaml key 'train.batch_size' is {p.batch_size}: a duplicate-free batch of that size needs {needed} "
            f"different passages ({len(columns) - 1} per pair), but the training pairs hold only {distinct}. Lower "
            f"'train.batch_size' to at most {distinct // (len(columns) - 1)}"
            + (", or set 'train.hard_negatives' to false" if p.hard_negatives else "")
            + ", or add documents."
        )
    counts = PairCounts(used=len(anchors), available=budget.own_available + budget.extra_available, extra=budget.extra,
                        extra_available=budget.extra_available)
    return columns, counts


def _hard_negatives(model, train_set: QADataset, anchors: list[str], positives: list[str], p, prompts: Prompts,
                    precision: str) -> list[str]:
    """One mined negative passage per training pair, from the training chunks only (never a val or test passage)."""
    from stages.lib.training.hard_negatives import MiningWindow, document_neighbours, mine_bm25_negatives, mine_model_negatives

    positives_by_query: dict[str, set[str]] = {}
    for _, query, chunk_id in train_set.pairs():
        positives_by_query.setdefault(query, set()).add(chunk_id)
    training_passages = {cid: train_set.corpus[cid] for ids in positives_by_query.values() for cid in sorted(ids)}
    neighbours = document_neighbours(load_chunks() + load_chunks(EXTRA_CHUNKS_FILE))
    if p.hard_negative_miner == "model":
        log.info(f"mining hard negatives with the base model over {len(training_passages)} training chunks")
        ids_by_text = {text: cid for cid, text in training_passages.items()}
        # A masked (Inverse Cloze) positive is not a chunk's text: its query's chunk stands for it.
        positive_ids = [ids_by_text.get(text) or min(positives_by_query[anchor]) for anchor, text in zip(anchors, positives,
                                                                                                           strict=True)]
        negative_ids = mine_model_negatives(model, anchors, positive_ids, training_passages,
                                            neighbours, p.hard_negative_rank_max, p.hard_negative_relative_margin, p.seed,
                                            prompts.query, prompts.document, precision=precision)
    else:
        window = MiningWindow(p.hard_negative_rank_min, p.hard_negative_rank_max, p.hard_negative_margin)
        negative_ids = mine_bm25_negatives(anchors, [positives_by_query[a] for a in anchors], training_passages,
                                           neighbours, window, p.seed, desc="[train] mine hard negatives")
    return [training_passages[cid] for cid in negative_ids]
