"""The sample order of an epoch and its split over ranks and DataLoader workers.

The trainer owns the order instead of using a streaming shuffle buffer, so that a resumed run skips
exactly the samples it has consumed and every rank runs the same number of steps.

Rows are addressed by a flat id: rows are numbered shard by shard, in file order. The unit of
reading is a block (a Parquet row group, or a run of samples of a tar shard). An epoch's order is
built in two seeded steps that depend only on (seed, epoch):

1. the blocks are permuted;
2. consecutive runs of `shuffle_blocks` blocks are merged and their rows shuffled.

The order is then cut into `world_size * workers` equal, contiguous segments ("slots"), one per
(rank, worker); the rows after the last full segment are dropped for that epoch. Each slot reads its
blocks once, and rank r's step s comes from worker s % workers of that rank, which is the order in
which a DataLoader returns the batches of an iterable dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


class DataLayoutError(ValueError):
    """The data cannot be split into the requested ranks, workers and batches."""


@dataclass(frozen=True)
class Layout:
    """Split of an epoch over `world_size` ranks of `workers` DataLoader workers each.

    `workers` counts the process that reads the data, so a DataLoader with `num_workers=0` has 1.
    """

    num_rows: int
    world_size: int
    workers: int
    batch_size: int

    @property
    def slots(self) -> int:
        return self.world_size * self.workers

    @property
    def batches_per_slot(self) -> int:
        return self.num_rows // (self.slots * self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        """Batches that each rank yields per epoch (the same on every rank)."""
        return self.batches_per_slot * self.workers

    @property
    def rows_per_epoch(self) -> int:
        """Rows used per epoch over all ranks."""
        return self.steps_per_epoch * self.world_size * self.batch_size

    def slot(self, rank: int, worker: int) -> int:
        return rank * self.workers + worker


def make_layout(num_rows: int, world_size: int, workers: int, batch_size: int, what: str = "data") -> Layout:
    """Return the layout, or raise DataLayoutError when not even one batch fits in every slot."""
    layout = Layout(num_rows, world_size, max(1, workers), batch_size)
    if layout.batches_per_slot == 0:
        needed = layout.slots * batch_size
        raise DataLayoutError(
            f"{what} has {num_rows} rows, fewer than the {needed} rows that one batch per rank and "
            f"worker needs ({world_size} ranks x {layout.workers} workers x batch size {batch_size}). "
            "Lower data.batch_size or data.num_workers, run on fewer ranks, or add data."
        )
    return layout


def epoch_order(block_rows: list[int], seed: int, epoch: int, shuffle_blocks: int) -> np.ndarray:
    """Return the flat row ids of all rows in the seeded order of `epoch`.

    `block_rows` gives the row count of each block in file order. The same arguments give the same
    order on every rank and in every worker.
    """
    rng = np.random.default_rng([seed, epoch])
    starts = np.concatenate([[0], np.cumsum(block_rows, dtype=np.int64)])
    blocks = rng.permutation(len(block_rows))

    parts = []
    for first in range(0, len(blocks), max(1, shuffle_blocks)):
        group = blocks[first : first + max(1, shuffle_blocks)]
        ids = np.concatenate([np.arange(starts[b], starts[b + 1], dtype=np.int64) for b in group])
        rng.shuffle(ids)
        parts.append(ids)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)


def slot_range(layout: Layout, slot: int) -> tuple[int, int]:
    """Return the [start, stop) range of epoch-order positions that a slot reads."""
    length = layout.batches_per_slot * layout.batch_size
    return slot * length, (slot + 1) * length


def consumed_batches(start_step: int, worker: int, workers: int) -> int:
    """Return how many of a worker's batches a rank consumed in its first `start_step` steps."""
    if start_step <= worker:
        return 0
    return (start_step - worker + workers - 1) // workers


def step_positions(layout: Layout, rank: int, step: int) -> range:
    """Return the epoch-order positions of the batch that `rank` yields at `step` of an epoch."""
    worker = step % layout.workers
    start, _ = slot_range(layout, layout.slot(rank, worker))
    first = start + (step // layout.workers) * layout.batch_size
    return range(first, first + layout.batch_size)
