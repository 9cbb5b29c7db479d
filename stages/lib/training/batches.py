"""Training batches: duplicate-free, and of texts of similar length.

A batch is padded to its longest text, so a random batch of passages computes about a third more tokens than it
reads in the default run (benchmarks/results/train_step_profile_*.json). ``SimilarLengthBatchSampler`` shuffles the
pairs, cuts the shuffled order into windows of ``WINDOW_BATCHES`` batches, sorts each window by length and cuts it
into consecutive batches. No text may appear twice in a batch (the same passage for two questions would be a false
in-batch negative, as sentence-transformers' NO_DUPLICATES sampler prevents): two questions on one passage share its
length, so they land side by side, and the second is swapped with a row of the nearest batch that can take it. The
batches are then shuffled, so the step order does not run from short to long.

A corpus with few passages per batch limits what sorting can do: in the default run 384 pairs share 149 passages,
so each batch of 32 must span a fifth of them, and padding falls from 0.35 to 0.25 of the passages' tokens.

Deterministic for a seed and an epoch (``set_epoch``), as a resumed run needs: the Trainer skips the batches
already trained by drawing them again.
"""

from __future__ import annotations

from collections import Counter

import torch
from sentence_transformers.base.sampler import DefaultBatchSampler

# Batches per sorted window: wide enough that a window holds passages of close lengths, narrow enough that a long
# run's batches still mix texts from all over the corpus.
WINDOW_BATCHES = 16


class SimilarLengthBatchSampler(DefaultBatchSampler):
    """Duplicate-free batches of pairs whose longest texts have similar lengths (characters; see module doc)."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0, duplicate_free: bool = True) -> None:
        super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
                         generator=generator, seed=seed)
        columns = [name for name in dataset.column_names if name not in set(valid_label_columns or [])]
        rows = list(zip(*(dataset[name] for name in columns), strict=True))
        # Without duplicate_free, no row has a text another could share: every batch fills in length order.
        self.texts = [frozenset(row) if duplicate_free else frozenset() for row in rows]
        self.lengths = [max(len(text) for text in row) for row in rows]

    def __len__(self) -> int:
        rows = len(self.texts)
        return rows // self.batch_size if self.drop_last else -(-rows // self.batch_size)

    def __iter__(self):
        generator = self.generator or torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.texts), generator=generator).tolist()
        window = WINDOW_BATCHES * self.batch_size
        batches: list[list[int]] = []
        waiting: list[int] = []
        for start in range(0, len(order), window):
            batches_of_window, waiting = self._fill(waiting + order[start:start + window])
            batches += batches_of_window
        if waiting and not self.drop_last:  # the rest, in batches of at most batch_size (duplicates allowed here)
            waiting.sort(key=self.lengths.__getitem__)
            batches += [waiting[i:i + self.batch_size] for i in range(0, len(waiting), self.batch_size)]
        batches += self._top_up(len(self) - len(batches), generator)
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        for index in shuffled[:len(self)]:
            yield batches[index]

    def _fill(self, rows: list[int]) -> tuple[list[list[int]], list[int]]:
        """As many full batches as ``rows`` make, of similar lengths, no text twice in one; returns them and the rows
        left over.

        The rows sorted by length are cut into consecutive batches; a row whose text is already in its batch (two
        questions on one passage share its length, so they land side by side) is swapped with a row of the nearest
        batch that can take it and whose row fits here. What no swap resolves leaves its batch for the rows left
        over, and a batch that cannot be filled again without a duplicate goes back to them whole.
        """
        count = len(rows) // self.batch_size
        ordered = sorted(rows, key=self.lengths.__getitem__)
        batches = [ordered[j * self.batch_size:(j + 1) * self.batch_size] for j in range(count)]
        left = ordered[count * self.batch_size:]
        held = [Counter(text for row in batch for text in self.texts[row]) for batch in batches]
        for j, batch in enumerate(batches):
            for position in range(len(batch)):
                duplicate = any(held[j][text] > 1 for text in self.texts[batch[position]])
                if duplicate and not self._swap_away(batches, held, j, position):
                    row = batch[position]
                    held[j].subtract(self.texts[row])
                    batch[position] = -1  # a hole, filled from the rows left over below
                    left.append(row)
        full = []
        for j, batch in enumerate(batches):
            rows_here = [row for row in batch if row >= 0]
            for row in list(left):
                if len(rows_here) == self.batch_size:
                    break
                if all(held[j][text] == 0 for text in self.texts[row]):
                    rows_here.append(row)
                    held[j].update(self.texts[row])
                    left.remove(row)
            if len(rows_here) == self.batch_size:
                full.append(rows_here)
            else:
                left += rows_here
        return full, left

    def _swap_away(self, batches: list[list[int]], held: list[Counter], j: int, position: int) -> bool:
        """Swap ``batches[j][position]`` (a duplicate in batch j) with a row of the nearest batch where each fits."""
        row = batches[j][position]
        mine = self.texts[row]
        for distance in range(1, len(batches)):
            for k in (j + distance, j - distance):
                if not 0 <= k < len(batches):
                    continue
                if any(held[k][text] > 0 for text in mine):
                    continue
                for other_position, other in enumerate(batches[k]):
                    theirs = self.texts[other] if other >= 0 else None
                    if theirs is None or any(held[j][text] - (text in mine) > 0 for text in theirs):
                        continue
                    batches[j][position], batches[k][other_position] = other, row
                    held[j].subtract(mine)
                    held[j].update(theirs)
                    held[k].subtract(theirs)
                    held[k].update(mine)
                    return True
        return False

    def _top_up(self, missing: int, generator: torch.Generator) -> list[list[int]]:
        """The batches one pass could not fill (a corpus with few distinct passages), drawn again from a fresh
        shuffle, so the epoch has the length the learning-rate schedule was built for (as NO_DUPLICATES does)."""
        extra: list[list[int]] = []
        for _ in range(8):  # a few passes at most; a corpus too small for any full batch is caught before training
            if len(extra) >= missing:
                break
            order = torch.randperm(len(self.texts), generator=generator).tolist()
            extra += self._fill(order)[0]
        return extra[:max(0, missing)]
