"""Tests of fine-tuning: pairs, hard negatives, vocabulary, the Trainer, checkpoints, resume and data-parallel runs."""
