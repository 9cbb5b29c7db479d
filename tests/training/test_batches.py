"""Similar-length, duplicate-free batches (stages/lib/training/batches.py), against sentence-transformers'
NO_DUPLICATES sampler as the reference: the same guarantees (no text twice in a batch, every pair once an epoch,
the advertised number of batches, the same batches again for a seed and epoch), and less padding."""

from __future__ import annotations

import random

import torch
from datasets import Dataset
from sentence_transformers.base.sampler import NoDuplicatesBatchSampler

from stages.lib.training.batches import SimilarLengthBatchSampler


def _pairs(n: int, passages: int, seed: int = 0) -> Dataset:
    """``n`` questions over ``passages`` passages of lengths 20..400 characters (several questions per passage)."""
    rng = random.Random(seed)
    texts = [f"passage {p} " + "x" * rng.randint(20, 400) for p in range(passages)]
    return Dataset.from_dict({"anchor": [f"question {i}?" for i in range(n)],
                              "positive": [texts[rng.randrange(passages)] for _ in range(n)]})


def _batches(sampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def _padding(data: Dataset, batches: list[list[int]]) -> float:
    """Padded characters per real character over the positives, as a batch pads to its longest text."""
    lengths = [len(text) for text in data["positive"]]
    real = sum(lengths[i] for batch in batches for i in batch)
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches) / real - 1


def test_batches_keep_no_duplicates_guarantees_with_less_padding():
    data = _pairs(n=1200, passages=1000)
    ours = SimilarLengthBatchSampler(data, batch_size=32, drop_last=True, generator=torch.Generator(), seed=42)
    reference = NoDuplicatesBatchSampler(data, batch_size=32, drop_last=True, generator=torch.Generator(), seed=42)
    batches = _batches(ours)
    assert len(batches) == len(ours) == len(reference) == 1200 // 32
    for batch in batches:
        texts = [data[i]["anchor"] for i in batch] + [data[i]["positive"] for i in batch]
        assert len(batch) == 32 and len(set(texts)) == len(texts)
    assert len({i for batch in batches for i in batch}) == sum(len(batch) for batch in batches)  # each pair once
    # The same batches for the same seed and epoch (a resumed run redraws them), others for the next epoch.
    assert _batches(ours) == batches and _batches(ours, epoch=1) != batches
    ours_padding, reference_padding = _padding(data, batches), _padding(data, _batches(reference))
    assert ours_padding < reference_padding / 3, (ours_padding, reference_padding)
    # Shuffled in step order: not a run from short to long.
    longest = [max(len(data[i]["positive"]) for i in batch) for batch in batches]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_few_distinct_passages_still_give_every_advertised_batch_without_duplicates():
    data = _pairs(n=300, passages=40)  # about 7 questions per passage: a pass fills few batches of 32
    sampler = SimilarLengthBatchSampler(data, batch_size=32, drop_last=True, generator=torch.Generator(), seed=1)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) == 300 // 32
    for batch in batches:
        positives = [data[i]["positive"] for i in batch]
        assert len(batch) == 32 and len(set(positives)) == 32


def test_without_duplicate_freedom_batches_fill_in_length_order_and_the_last_partial_one_is_kept():
    data = _pairs(n=100, passages=10)
    sampler = SimilarLengthBatchSampler(data, batch_size=32, drop_last=False, generator=torch.Generator(), seed=3,
                                        duplicate_free=False)
    batches = _batches(sampler)
    assert len(batches) == len(sampler) == 4 and sorted(i for batch in batches for i in batch) == list(range(100))
