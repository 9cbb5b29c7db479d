"""Validation during training: which questions score the checkpoints (golden val about this corpus when
there is one, else the generator's synthetic val split, for the curve only), bounded to a sample, and the
sentence-transformers evaluator that scores them, with the names its scores carry in the Trainer's logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.lib.common.params import Params
from stages.lib.documents.chunking import Chunk
from stages.lib.models.hardware import Hardware, encoding_batch_size
from stages.lib.models.prompts import NO_PROMPTS, Prompts
from stages.lib.questions.qa_dataset import QADataset

EVALUATOR_NAME = "val"
# The Trainer's name for the scores of the evaluator ``validation`` makes: "eval_" + its name + its similarity.
VAL_PREFIX = f"eval_{EVALUATOR_NAME}_cosine_"
VAL_METRIC = VAL_PREFIX + "ndcg@10"  # what model selection and weight ensembling compare
# The scores the training curves show, by the name they are shown under (hit@5: the evaluator's accuracy@5).
CURVE_SCORES = {"ndcg@10": VAL_PREFIX + "ndcg@10", "mrr@10": VAL_PREFIX + "mrr@10", "hit@5": VAL_PREFIX + "accuracy@5"}


@dataclass(frozen=True)
class Validation:
    """The val questions a run scores: its evaluator (None without any), their size and their standing."""

    evaluator: object | None
    queries: int
    corpus: int
    source: str  # "golden val" or "synthetic val" (or "none")
    chooses: bool  # the questions choose the kept step (golden val), or only draw the curve (synthetic val)


def validation(chunks: list[Chunk], synthetic_val: QADataset, params: Params, hardware: Hardware,
               prompts: Prompts) -> Validation:
    """Model selection on questions people wrote. Without them the generator's val split is scored for the curves
    only, and the run keeps its final step: synthetic questions reuse their passages' words, and on the Labor
    Contract Law choosing on them would have kept the base model (retrieval/question_sets.py)."""
    from stages.lib.retrieval.eval_sample import bounded_dataset
    from stages.lib.retrieval.question_sets import golden_val

    p = params.train
    golden = golden_val(chunks, params.evaluate.golden_sets)
    source, questions = ("golden val", golden) if golden is not None else ("synthetic val", synthetic_val)
    if not questions.queries:
        return Validation(evaluator=None, queries=0, corpus=0, source="none", chooses=golden is not None)
    bounded = bounded_dataset(questions, p.max_val_queries, p.max_val_corpus, f"train.val:{p.seed}")
    evaluator = ir_evaluator(bounded, EVALUATOR_NAME, batch_size=encoding_batch_size("auto", hardware.device),
                             prompts=prompts)
    return Validation(evaluator=evaluator, queries=len(bounded.queries), corpus=len(bounded.corpus), source=source,
                      chooses=golden is not None)


def ir_evaluator(dataset: QADataset, name: str, batch_size: int, prompts: Prompts = NO_PROMPTS):
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    # The prompts always given as strings: None would let the evaluator pick the model's own prompt names.
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
        query_prompt=prompts.query,
        corpus_prompt=prompts.document,
    )
