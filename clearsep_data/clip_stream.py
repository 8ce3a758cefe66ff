"""The corpus as a ``torch.utils.data.IterableDataset``: this process's rows, prepared in DataLoader workers.

A row belongs to the process whose rank is its block's number modulo the number of processes; among this
process's rows, the ``w``-th worker of ``W`` prepares (chooses the queries of and decodes) every ``W``-th one.
The DataLoader asks its workers for items in turn, so the rows come out in corpus order whatever ``W`` is: the
engine sees the same sequence with 0 workers or 8, and a resumed build resumes on the same blocks. Rows of blocks
committed by an earlier run are passed through undecoded, for the engine's check that the corpus did not change.
Each worker ends with :class:`CorpusEnd`, the number of corpus rows (every worker reads the whole listing).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clearsep_data.distributed import exit_with_parent
from clearsep_data.track_maker import Prepared, TrackMaker


@dataclass(frozen=True)
class CorpusEnd:
    """The last item of a worker: how many rows the corpus has (clips and skips, all processes)."""

    rows: int


class ClipStream(IterableDataset):
    """This process's corpus rows, in order, each as a :class:`~clearsep_data.track_maker.Prepared`."""

    def __init__(self, corpus, maker: TrackMaker, *, rank: int, world: int, block_size: int, done: set[int]):
        self.corpus, self.maker = corpus, maker
        self.rank, self.world, self.block_size, self.done = rank, world, block_size, done

    def __iter__(self) -> Iterator[Prepared | CorpusEnd]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        position = rows = 0
        for item in self.corpus:
            rows = item.index + 1
            block = item.index // self.block_size
            if block % self.world != self.rank:
                continue
            position += 1
            if (position - 1) % workers != worker:
                continue
            yield Prepared(item) if block in self.done else self.maker.prepare(item, self.corpus)
        yield CorpusEnd(rows)


def _as_is(item):
    """The DataLoader's collate function: items stay as they are (its default turns arrays into tensors)."""
    return item


def clip_loader(stream: ClipStream, num_workers: int, inherited_lock: int | None = None) -> DataLoader:
    """A DataLoader over ``stream`` with ``num_workers`` worker processes (0: in this process).

    Workers are forked: each closes its copy of the build folder's ``flock`` (``inherited_lock``, a descriptor), which
    would keep the folder locked after a ``kill -9`` of this process, and ends when this process does.
    """
    return DataLoader(stream, batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                      worker_init_fn=functools.partial(_start_worker, inherited_lock),
                      multiprocessing_context="fork" if num_workers else None)


def _start_worker(inherited_lock: int | None, worker_id: int) -> None:
    if inherited_lock is not None:
        os.close(inherited_lock)
    exit_with_parent()
