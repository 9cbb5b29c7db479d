"""Fine-tuning with the sentence-transformers Trainer."""

from __future__ import annotations

import csv
import math
import random
import re
from pathlib import Path

from stages.lib.params import TrainParams
from stages.lib.qa_dataset import QADataset


def mask_query_in_passage(query: str, passage: str) -> str:
    """Inverse Cloze Task masking: drop the query sentence from its passage, if it is there verbatim."""
    if len(query) < 8 or query not in passage:
        return passage
    masked = passage.replace(query, "", 1)
    return "\n".join(line for line in masked.split("\n") if line.strip()) or passage


def training_pairs(dataset: QADataset, mask_probability: float, seed: int) -> tuple[list[str], list[str]]:
    """(anchors, positives) with ICT masking applied to ``sentence`` queries, deterministically."""
    rng = random.Random(seed)
    anchors, positives = [], []
    for qid, query, chunk_id in dataset.pairs():
        passage = dataset.corpus[chunk_id]
        if dataset.query_styles.get(qid) == "sentence" and rng.random() < mask_probability:
            passage = mask_query_in_passage(query, passage)
        anchors.append(query)
        positives.append(passage)
    return anchors, positives


def build_loss(model, params: TrainParams):
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if params.loss == "cached_mnrl":
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=params.mini_batch_size)
    return MultipleNegativesRankingLoss(model)


def ir_evaluator(dataset: QADataset, name: str, batch_size: int):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        queries=dataset.queries,
        corpus=dataset.corpus,
        relevant_docs={qid: set(docs) for qid, docs in dataset.relevant_docs.items()},
        name=name,
        accuracy_at_k=[1, 3, 5, 10],
        precision_recall_at_k=[10],
        mrr_at_k=[10],
        ndcg_at_k=[10],
        map_at_k=[10],
        batch_size=batch_size,
        show_progress_bar=False,
    )


def embedding_learning_rate_mapping(loss, learning_rate: float) -> dict[str, float]:
    """A ``learning_rate_mapping`` entry for the input-embedding matrix, whatever the architecture calls it."""
    embeddings = loss.model[0].auto_model.get_input_embeddings().weight
    name = next(n for n, p in loss.named_parameters() if p is embeddings)
    return {f"^{re.escape(name)}$": learning_rate}


def steps_per_epoch(n_pairs: int, batch_size: int) -> int:
    return max(1, math.ceil(n_pairs / batch_size))


class CurveLogger:
    """A TrainerCallback that writes the loss and validation curves as CSV for ``dvc plots``."""

    def __init__(self, loss_file: Path, val_file: Path, metric_prefix: str) -> None:
        from transformers import TrainerCallback

        self.loss_rows: list[dict] = []
        self.val_rows: list[dict] = []
        logger = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                logs = logs or {}
                if "loss" in logs:
                    logger.loss_rows.append(
                        {"step": state.global_step, "epoch": round(state.epoch or 0, 3), "loss": logs["loss"]}
                    )
                values = {k.removeprefix(metric_prefix): v for k, v in logs.items() if k.startswith(metric_prefix)}
                if values:
                    logger.val_rows.append({"step": state.global_step, "epoch": round(state.epoch or 0, 3), **values})

        self.callback = _Callback()
        self.loss_file, self.val_file = loss_file, val_file

    def write(self) -> None:
        for path, rows in ((self.loss_file, self.loss_rows), (self.val_file, self.val_rows)):
            path.parent.mkdir(parents=True, exist_ok=True)
            fields = list(dict.fromkeys(key for row in rows for key in row)) or ["step"]
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
