"""Opening track datasets (the engine's output) from a local folder or the Hub.

``load_dataset(folder)`` on a local folder whose README declares ``configs`` reuses a cache entry
keyed by the folder's *name* and its config, not by the files: two builds both called ``tracks``
(``round-1/tracks``, ``round-2/tracks``) would silently load the same data. Local folders are
therefore read with the ``parquet`` builder over their resolved shard files, which datasets keys
by the files themselves; Hub ids go through ``load_dataset`` as usual.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, Features, IterableDataset, load_dataset


def local_shards(folder: Path, split: str) -> list[str]:
    """The parquet shards of ``split`` in a track dataset folder, in order."""
    return [str(path) for path in sorted((folder / "data").glob(f"{split}-*.parquet"))]


def load_tracks(source: str | Path, split: str = "train", streaming: bool = False) -> Dataset | IterableDataset:
    """A split of a track dataset: a local folder written by ``clearsep-data build``, or a Hub id."""
    folder = Path(source)
    if folder.is_dir():
        shards = local_shards(folder, split)
        if not shards:
            raise FileNotFoundError(f"{folder}: no parquet shards for split {split!r} under data/")
        if not streaming and all(pq.read_metadata(shard).num_rows == 0 for shard in shards):
            # A build that produced no track: datasets cannot materialise a split of zero rows from files.
            features = Features.from_arrow_schema(pq.read_schema(shards[0]))
            return Dataset.from_dict({name: [] for name in features}, features=features)
        return load_dataset("parquet", data_files={split: shards}, split=split, streaming=streaming)
    return load_dataset(str(source), split=split, streaming=streaming)
