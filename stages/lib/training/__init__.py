"""Fine-tuning: training pairs and their sampling, round-trip filtering of the generated training
questions, hard negatives, vocabulary extension, the
sentence-transformers Trainer with checkpoints that resume, data-parallel launch, the training
outcome (metrics, and the curves logged with DVCLive), weight-space ensembling with the base model (WiSE-FT) and the saved model.

May import: every other concern.
"""
