"""Training micro-batches read through a torch DataLoader (issue 18): worker processes cut the batches of a
BatchSource ahead of the step that needs them (from the memory-mapped window store, data/window_store.py, the reads
from disk overlap the GPU's work). Every batch is still the pure function of (index, rank) that train/loop.py
relies on for exact resume, so a streamed run equals an in-memory one.
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

import torch


class _Batches(torch.utils.data.Dataset):
    def __init__(self, source, rank: int, world: int):
        self.source, self.rank, self.world = source, rank, world

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.source.batch(int(index), self.rank, self.world)


class LoaderSource:
    """A BatchSource read through a DataLoader: micro-batches start, start+1, ... are made in `workers` processes
    ahead of the loop. A request out of that order (none in train/loop.py) is answered directly and restarts the
    read-ahead after it."""

    def __init__(self, source, rank: int, world: int, *, start: int = 0, workers: int = 2, prefetch: int = 4):
        self.source, self.rank, self.world = source, rank, world
        self.workers, self.prefetch = workers, prefetch
        self._it, self._next = None, start
        self._start(start)

    def _start(self, start: int) -> None:
        self.close()
        ctx = "fork" if sys.platform.startswith("linux") else None  # the window set is inherited, not pickled
        loader = torch.utils.data.DataLoader(
            _Batches(self.source, self.rank, self.world), batch_size=None, sampler=itertools.count(start),
            num_workers=self.workers, prefetch_factor=self.prefetch if self.workers else None,
            multiprocessing_context=ctx if self.workers else None)
        self._it, self._next = iter(loader), start

    def batch(self, index: int, rank: int, world: int) -> dict[str, Any]:
        if (rank, world) != (self.rank, self.world):
            return self.source.batch(index, rank, world)
        if index != self._next:
            self._start(index + 1)
            return self.source.batch(index, rank, world)
        self._next += 1
        return next(self._it)

    def close(self) -> None:
        if self._it is not None and hasattr(self._it, "_shutdown_workers"):
            self._it._shutdown_workers()
        self._it = None

    def __len__(self) -> int:
        return len(self.source)
