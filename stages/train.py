"""Stage ``train``: fine-tune ``models/base`` on the training questions -> ``models/finetuned/``.

Model selection is on the val split (NDCG@10); the loss and validation curves
go to ``metrics/train_curves/`` for ``dvc plots``. If the base tokenizer maps
too much of the corpus to ``[UNK]``, the vocabulary is extended first and the
extended tokenizer is saved with the model.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from stages.lib.corpus_io import load_chunks
from stages.lib.errors import UserError, run_stage
from stages.lib.files import replacing_directory, write_json
from stages.lib.params import load_params
from stages.lib.qa_dataset import QADataset
from stages.lib.training import (
    CurveLogger,
    build_loss,
    embedding_learning_rate_mapping,
    ir_evaluator,
    steps_per_epoch,
    training_pairs,
)
from stages.lib.vocab import extend_vocabulary, measure_coverage

BASE_DIR = Path("models/base")
OUTPUT_DIR = Path("models/finetuned")
WORK_DIR = Path("models/.train-work")  # checkpoints; git- and dvc-ignored
QUESTIONS_DIR = Path("data/questions")
METRICS_FILE = Path("metrics/train.json")
CURVES_DIR = Path("metrics/train_curves")
VAL_METRIC = "eval_val_cosine_ndcg@10"


@run_stage("train")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import set_seed

    all_params = load_params()
    params, model_params = all_params.train, all_params.model
    set_seed(params.seed)
    train_set = QADataset.load(QUESTIONS_DIR / "train.json")
    val_set = QADataset.load(QUESTIONS_DIR / "val.json")
    if not train_set.queries:
        raise UserError(f"{QUESTIONS_DIR / 'train.json'} has no queries: check 'questions.train_styles'.")
    if not BASE_DIR.is_dir():
        raise UserError(f"{BASE_DIR} is missing: run `dvc repro base_model` first.")
    model = SentenceTransformer(str(BASE_DIR), device="cpu")
    model.max_seq_length = model_params.max_seq_length

    texts = [chunk.text for chunk in load_chunks()] + list(train_set.queries.values())
    before = measure_coverage(model.tokenizer, texts)
    added = 0
    if params.extend_vocab and before.unknown_rate > params.unk_threshold:
        added = extend_vocabulary(model, list(before.missing))
    after = measure_coverage(model.tokenizer, texts) if added else before
    print(f"[train] [UNK] rate {before.unknown_rate:.1%} -> {after.unknown_rate:.1%} ({added} tokens added)")

    anchors, positives = training_pairs(train_set, params.ict_mask_probability, params.seed)
    train_data = Dataset.from_dict({"anchor": anchors, "positive": positives})
    evaluator = ir_evaluator(val_set, "val", batch_size=64) if val_set.queries else None
    steps = steps_per_epoch(len(anchors), params.batch_size)
    eval_steps = max(1, steps // params.evals_per_epoch)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    loss = build_loss(model, params)
    learning_rate_mapping = embedding_learning_rate_mapping(loss, params.embedding_learning_rate) if added else {}
    shutil.rmtree(WORK_DIR, ignore_errors=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(WORK_DIR),
        num_train_epochs=params.epochs,
        per_device_train_batch_size=params.batch_size,
        learning_rate=params.learning_rate,
        learning_rate_mapping=learning_rate_mapping,
        warmup_steps=params.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        weight_decay=params.weight_decay,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        seed=params.seed,
        data_seed=params.seed,
        eval_strategy="steps" if evaluator else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if evaluator else "no",
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=bool(evaluator),
        metric_for_best_model=VAL_METRIC if evaluator else None,
        greater_is_better=True,
        logging_steps=max(1, steps // 10),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    curves = CurveLogger(CURVES_DIR / "loss.csv", CURVES_DIR / "val.csv", "eval_val_cosine_")
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=train_data,
        loss=loss,
        evaluator=evaluator,
        callbacks=[curves.callback],
    )
    started = time.perf_counter()
    try:
        result = trainer.train()
    except KeyboardInterrupt:
        # Keep what was trained so far: minutes of CPU are not thrown away.
        rescue = OUTPUT_DIR.with_name(f"finetuned.interrupted-step{trainer.state.global_step}")
        shutil.rmtree(rescue, ignore_errors=True)
        model.save(str(rescue))
        print(f"[train] interrupted at step {trainer.state.global_step}; partial model saved to {rescue}/")
        raise
    train_seconds = time.perf_counter() - started
    curves.write()

    with replacing_directory(OUTPUT_DIR) as staging:
        model.save(str(staging))
    shutil.rmtree(WORK_DIR, ignore_errors=True)

    best = trainer.state.best_metric
    write_json(METRICS_FILE, {
        "unk_rate_before": round(before.unknown_rate, 4),
        "unk_rate_after": round(after.unknown_rate, 4),
        "tokens_added": added,
        "train_pairs": len(anchors),
        "learning_rate": params.learning_rate,
        "steps": trainer.state.global_step,
        "train_loss": round(result.training_loss, 4),
        "best_val_ndcg@10": round(best, 4) if best is not None else 0.0,
        "train_seconds": round(train_seconds, 1),
        "pairs_per_second": round(len(anchors) * params.epochs / train_seconds, 2),
    })
    print(f"[train] {len(anchors)} pairs x {params.epochs} epochs in {train_seconds:.0f}s; "
          f"best val NDCG@10 {best if best is not None else float('nan'):.3f}")


if __name__ == "__main__":
    main()
