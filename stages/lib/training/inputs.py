"""What a training run starts from: the checks that its inputs exist and its batch splits evenly, and
``build_inputs``, which loads the base model (vocabulary extended and token embeddings frozen as the
params say, prompts attached), the sampled training pairs with their mined hard negatives, and the
bounded validation evaluator that model selection scores on. Heavy libraries are imported inside the
functions, so that a stage importing this module fails fast on a user error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.lib.common.errors import UserError
from stages.lib.common.params import Params
from stages.lib.documents.chunk_file import CHUNKS_FILE, EXTRA_CHUNKS_FILE, load_chunks
from stages.lib.models.hardware import Hardware, encoding_batch_size
from stages.lib.models.prompts import Prompts, resolve_prompts, save_prompts
from stages.lib.questions.qa_dataset import QADataset
from stages.lib.training.distributed import local_rank
from stages.lib.training.round_trip import RoundTrip

BASE_DIR = Path("models/base")
QUESTIONS_DIR = Path("data/questions")
# The files a run reads besides the base model and the code. Their order is part of the checkpoint
# fingerprint: reordering them would discard every resumable checkpoint.
INPUT_FILES = (CHUNKS_FILE, QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json")
# The Trainer's name for the scores of the "val" evaluator that ``build_inputs`` makes.
VAL_PREFIX = "eval_val_cosine_"
VAL_METRIC = VAL_PREFIX + "ndcg@10"


def require_inputs() -> None:
    for path in (QUESTIONS_DIR / "train.json", QUESTIONS_DIR / "val.json", CHUNKS_FILE):
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


@dataclass
class Built:
    model: object
    train_data: object
    evaluator: object | None
    n_pairs: int
    n_pairs_available: int
    n_pairs_extra: int  # of n_pairs, from the extra training documents (train.max_extra_pairs)
    n_pairs_extra_available: int
    val_queries: int
    val_corpus: int
    coverage_before: float
    coverage_after: float
    tokens_added: int
    embeddings_frozen: bool
    prompts: Prompts
    val_source: str  # "golden val" or "synthetic val" (or "none")
    chooses: bool  # the val questions choose the kept step (golden val), or only draw the curve (synthetic val)
    round_trip: RoundTrip  # which training questions the round-trip filter kept


def build_inputs(params: Params, hardware: Hardware, say=print) -> Built:
    """The model (on its device, vocabulary extended if needed), the training pairs and the bounded val evaluator."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from stages.lib.retrieval.eval_sample import bounded_dataset
    from stages.lib.retrieval.question_sets import golden_val
    from stages.lib.training.pairs import budgeted_pairs, duplicate_free_shortfall
    from stages.lib.training.round_trip import require_enough_pairs, round_trip_filter
    from stages.lib.training.trainer import ir_evaluator
    from stages.lib.training.vocab import extend_vocabulary, measure_coverage

    p = params.train
    train_set, val_set = QADataset.load(QUESTIONS_DIR / "train.json"), QADataset.load(QUESTIONS_DIR / "val.json")
    if not train_set.queries:
        raise UserError(f"{QUESTIONS_DIR / 'train.json'} has no queries: check 'questions.train_styles'.")
    model_device = f"cuda:{local_rank()}" if hardware.device == "cuda" else hardware.device
    model = SentenceTransformer(str(BASE_DIR), device=model_device)
    model.max_seq_length = params.model.max_seq_length
    prompts = resolve_prompts(params.model.query_prompt, params.model.document_prompt, BASE_DIR)
    save_prompts(model, prompts)  # every save (best model, checkpoints) carries them

    chunks = load_chunks()
    # Before the vocabulary is extended: the base ranker must be the base model, not one with new, untrained rows.
    round_trip = round_trip_filter(train_set, chunks, p.round_trip_filter, p.round_trip_top_k, model, prompts,
                                   hardware.precision)
    if round_trip.ranker != "none":
        say(round_trip.describe())
    require_enough_pairs(round_trip, p.batch_size)
    train_set = round_trip.dataset
    # The corpus, then the extra training documents' chunks (train.json's corpus beyond the chunk file), then the
    # questions: the vocabulary must cover every text the model trains on.
    target_ids = {chunk.id for chunk in chunks}
    extra_texts = [text for cid, text in train_set.corpus.items() if cid not in target_ids]
    texts = [chunk.text for chunk in chunks] + extra_texts + list(train_set.queries.values())
    before = measure_coverage(model.tokenizer, texts)
    added = extend_vocabulary(model, list(before.missing)) if p.extend_vocab and before.unknown_rate > p.unk_threshold else 0
    after = measure_coverage(model.tokenizer, texts) if added else before
    frozen = p.freeze_token_embeddings is True or (p.freeze_token_embeddings == "auto" and not added)
    if frozen:
        model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)

    budget = budgeted_pairs(train_set, target_ids, p.ict_mask_probability, p.seed, p.max_pairs, p.max_extra_pairs)
    anchors, positives = budget.anchors, budget.positives
    if len(anchors) < p.batch_size:
        raise UserError(
            f"Only {len(anchors)} training pairs, fewer than params.yaml key 'train.batch_size' ({p.batch_size}): "
            "lower the batch size, raise 'train.max_pairs', or add documents/questions."
        )
    columns = {"anchor": anchors, "positive": positives}
    if p.hard_negatives:
        columns["negative"] = _hard_negatives(model, train_set, anchors, positives, p, prompts, hardware.precision, say)
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
    # Model selection on questions people wrote. Without them the generator's val split is scored for the curves
    # only, and the run keeps its final step: synthetic questions reuse their passages' words, and on the Labor
    # Contract Law choosing on them would have kept the base model (retrieval/question_sets.py).
    golden = golden_val(chunks, params.evaluate.golden_sets)
    val_source, selection_set = ("golden val", golden) if golden is not None else ("synthetic val", val_set)
    val = (bounded_dataset(selection_set, p.max_val_queries, p.max_val_corpus, f"train.val:{p.seed}")
           if selection_set.queries else None)
    return Built(
        model=model,
        train_data=Dataset.from_dict(columns),
        evaluator=ir_evaluator(val, "val", batch_size=encoding_batch_size("auto", hardware.device), prompts=prompts) if val else None,
        n_pairs=len(anchors),
        n_pairs_available=budget.own_available + budget.extra_available,
        n_pairs_extra=budget.extra,
        n_pairs_extra_available=budget.extra_available,
        val_queries=len(val.queries) if val else 0,
        val_corpus=len(val.corpus) if val else 0,
        coverage_before=before.unknown_rate,
        coverage_after=after.unknown_rate,
        tokens_added=added,
        embeddings_frozen=frozen,
        prompts=prompts,
        val_source=val_source if val else "none",
        chooses=golden is not None,
        round_trip=round_trip,
    )


def _hard_negatives(model, train_set: QADataset, anchors: list[str], positives: list[str], p, prompts: Prompts,
                    precision: str, say) -> list[str]:
    """One mined negative passage per training pair, from the training chunks only (never a val or test passage)."""
    from stages.lib.training.hard_negatives import MiningWindow, document_neighbours, mine_bm25_negatives, mine_model_negatives

    positives_by_query: dict[str, set[str]] = {}
    for _, query, chunk_id in train_set.pairs():
        positives_by_query.setdefault(query, set()).add(chunk_id)
    training_passages = {cid: train_set.corpus[cid] for ids in positives_by_query.values() for cid in sorted(ids)}
    neighbours = document_neighbours(load_chunks() + load_chunks(EXTRA_CHUNKS_FILE))
    if p.hard_negative_miner == "model":
        say(f"[train] mining hard negatives with the base model over {len(training_passages)} training chunks")
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
