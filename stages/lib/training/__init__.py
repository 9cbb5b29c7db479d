"""Fine-tuning: training pairs and their sampling, hard negatives, vocabulary extension, the
sentence-transformers Trainer with checkpoints that resume, data-parallel launch, the training
outcome (curves, metrics) and the saved model.

May import: every other concern.
"""
