"""Reading a streamed dataset's coming batches ahead, in worker processes, into pinned memory.

A training step's rows are a pure function of (seed, step) (`data.batch_indices`), so what each
process will read at every coming step is known before the step runs. `ReadAhead` hands that
schedule (`StepReads`: step -> this process's micro-batches' row numbers, in the order the loop
reads them) to `num_workers` worker processes of a `torch.utils.data.DataLoader`; each reads the
uint8 rows of whole steps from the memory map (worker w reads steps w, w + W, ...), `prefetch`
steps ahead each, into pinned host memory when the device is CUDA, so the copy to the GPU can
overlap compute. The loop then asks for rows as before (`StreamedExamples.__getitem__`), and
`take` answers from the queue when the rows asked for are the ones scheduled next, which they are
in a training run; any other read (or any disagreement) is read directly, so what the loop sees
never depends on the workers: a run with workers is bit-identical to one without, and resumes
exactly (the schedule restarts at the resumed step).

Nothing but row numbers and the memory map's file name crosses to the workers: `ImageRows`
pickles by file name, so workers started by spawn or forkserver do not copy the data either.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import numpy as np
import torch
from absl import logging

from scoresde import data

DEFAULT_PREFETCH = 2  # steps each worker reads ahead (DataLoader's prefetch_factor)


@dataclasses.dataclass(frozen=True)
class StepReads:
    """The rows one process reads at step k: the epoch-shuffled batch of `data.batch_indices(n,
    size, k, seed)`, cut into `parts` (this process's micro-batch slices, in reading order)."""

    n: int
    size: int
    seed: int
    parts: tuple[slice, ...] = (slice(None),)

    def __call__(self, step: int) -> list[np.ndarray]:
        idx = data.batch_indices(self.n, self.size, step, self.seed)
        return [idx[part] for part in self.parts]


class _Steps(torch.utils.data.Dataset):
    """Item i: the (row numbers, uint8 rows) this process reads at step steps[i], per read."""

    def __init__(self, rows, reads: StepReads, steps: range):
        self.rows, self.reads, self.steps = rows, reads, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int) -> list[tuple[np.ndarray, torch.Tensor]]:
        return [(p, torch.from_numpy(self.rows.read_uint8(p))) for p in self.reads(self.steps[i])]


class ReadAhead:
    """Worker processes reading the rows of `steps` ahead (module docstring).

    Args:
        rows: the `prepared.ImageRows` the rows come from.
        reads: what is read at each step, in order (`StepReads`).
        steps: the steps to read, in order (range(start, n_steps)).
        num_workers: worker processes (>= 1).
        pin_memory: read into page-locked memory (for a CUDA device).
        prefetch: steps each worker reads ahead.

    `wait_seconds` accumulates the time `take` spent blocked on the workers (the loader's stalls).
    """

    def __init__(
        self,
        rows,
        reads: StepReads,
        steps: range,
        num_workers: int,
        *,
        pin_memory: bool = False,
        prefetch: int = DEFAULT_PREFETCH,
    ):
        if num_workers < 1:
            raise ValueError(f"config.data.num_workers must be at least 1 for reading ahead, got {num_workers}")
        if prefetch < 1:
            raise ValueError(f"reading ahead needs prefetch >= 1 steps per worker, got {prefetch}")
        loader = torch.utils.data.DataLoader(
            _Steps(rows, reads, steps),
            batch_size=None,  # an item is a whole step already
            shuffle=False,
            num_workers=num_workers,
            pin_memory=pin_memory,
            prefetch_factor=prefetch,
            persistent_workers=False,
        )
        self._loader = loader
        self._items: Iterator | None = iter(loader) if len(steps) else None
        self._pending: list[tuple[np.ndarray, torch.Tensor]] = []
        self.wait_seconds = 0.0
        self.served = self.missed = 0

    def take(self, positions: np.ndarray) -> torch.Tensor | None:
        """The uint8 rows `positions` if they are the next scheduled read (then consumed), else None."""
        if not self._pending:
            if self._items is None:
                return None
            tick = time.perf_counter()
            try:
                self._pending = list(next(self._items))
            except StopIteration:
                self._items = None
                return None
            finally:
                self.wait_seconds += time.perf_counter() - tick
        expected, rows = self._pending[0]
        if not np.array_equal(expected, positions):
            self.missed += 1
            if self.missed == 1:
                logging.debug("read-ahead: a read outside the schedule; read directly")
            return None
        self._pending.pop(0)
        self.served += 1
        return rows

    def close(self) -> None:
        """Stop the workers (the queue's unread steps are dropped)."""
        self._items, self._pending = None, []  # the DataLoader's iterator stops its workers when released

    def __enter__(self) -> "ReadAhead":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
