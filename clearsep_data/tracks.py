"""The track dataset format, owned here alone: splits, fields, ids, shard names, loading and counting.

The engine writes it, the trainer, the loop, ``stats`` and ``push`` read it; each takes every name and rule
of the format from this module.

``load_dataset(folder)`` on a local folder whose README declares ``configs`` reuses a cache entry keyed by
the folder's *name* and its config, not by the files: two builds both called ``tracks`` (``round-1/tracks``,
``round-2/tracks``) would silently load the same data. :func:`load_tracks` therefore reads local folders
with the ``parquet`` builder over their resolved shard files, which datasets keys by the files themselves;
Hub ids go through ``load_dataset`` as usual.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Audio, Dataset, Features, IterableDataset, Value, load_dataset

from clearsep_data.ontology import mid_slug

ACCEPTED_SPLIT = "train"
REJECTED_SPLIT = "rejected"
ORIGIN_SINGLE_SOURCE = "single_source"
ORIGIN_SEPARATED = "separated"
QUALITY_FIELDS: tuple[str, ...] = ("re_sdr", "re_sisdr", "energy_ratio", "consistency_sisdr", "leakage_db", "predicted_si_sdr")
"""The reference-free quality fields (:mod:`clearsep_data.quality`), in the order the format lists them."""
LATER_FIELDS: tuple[str, ...] = ("predicted_si_sdr",)
"""Fields added to the format after its first release: a dataset built before lacks them (read as nulls)."""
DATA_DIR = "data"
SHARD_NAME = re.compile(r"^(?P<split>[A-Za-z0-9_]+)(?:-(?P<index>\d+)-of-(?P<count>\d+))?\.parquet$")
"""``{split}-XXXXX-of-YYYYY.parquet`` (written by ClearSep and ``push_to_hub``), or ``{split}.parquet``."""

#: Field descriptions, shown in the README and the dataset card.
TRACK_FIELDS: dict[str, str] = {
    "audio": "The track as FLAC bytes (mono), decoded by datasets' Audio feature.",
    "track_id": "Unique id of the track: `{clip_id}_{start_ms}_{label slug}`.",
    "clip_id": "Id of the source clip in its corpus (for AudioSet, the YouTube id, YTID).",
    "start_seconds": "Segment start within the source recording (for AudioSet, the YouTube video), as in the segments CSV.",
    "end_seconds": "Segment end within the source recording (for AudioSet, the YouTube video), as in the segments CSV.",
    "label": "AudioSet MID of the sound event this track holds (the query).",
    "label_name": "Display name of `label`.",
    "clip_labels": "All MIDs the clip was annotated with, as listed in the corpus.",
    "clip_label_names": "Display names of `clip_labels`, in the same order.",
    "origin": "`single_source` (a clip with one label, kept whole) or `separated` (a model output).",
    "re_sdr": "Re-SDR in dB: SDR of the original clip against the sum of its separated tracks (clip-level, copied to each track). Null for single-source tracks.",
    "re_sisdr": "Re-SI-SDR in dB: the scale-invariant version of `re_sdr`. Null for single-source tracks.",
    "energy_ratio": "Energy of the track relative to the clip, in dB (0 dB for single-source tracks).",
    "consistency_sisdr": "SI-SDR in dB between the track and the model's re-separation of the track with its own query: a clean track comes back unchanged. Null for single-source tracks.",
    "leakage_db": "Energy in dB, relative to the track, of the most energetic re-separation of the track with the clip's other queries: a clean track yields near-silence. Null when the clip has one query.",
    "predicted_si_sdr": "SI-SDR in dB the track is predicted to have against its (unknown) reference: ClearSep's shipped ridge regression over the five fields above, fitted on tracks with known references. Null for single-source tracks.",
    "iteration": "Round of the ClearSep loop that produced the track (`build --iteration`; round 0 holds only single-source clips).",
    "model": "Separation model that produced the track: `{id}@{revision}` (empty for single-source tracks).",
    "thresholds": "JSON of the thresholds the track was filtered with.",
    "reject_reason": "Why the track was rejected (empty in the accepted split).",
}

TRACK_FEATURE_TYPES: dict[str, object] = {
    "track_id": Value("string"),
    "clip_id": Value("string"),
    "start_seconds": Value("float64"),
    "end_seconds": Value("float64"),
    "label": Value("string"),
    "label_name": Value("string"),
    "clip_labels": [Value("string")],
    "clip_label_names": [Value("string")],
    "origin": Value("string"),
    "re_sdr": Value("float32"),
    "re_sisdr": Value("float32"),
    "energy_ratio": Value("float32"),
    "consistency_sisdr": Value("float32"),
    "leakage_db": Value("float32"),
    "predicted_si_sdr": Value("float32"),
    "iteration": Value("int32"),
    "model": Value("string"),
    "thresholds": Value("string"),
    "reject_reason": Value("string"),
}


def track_features(sampling_rate: int) -> Features:
    """The ``datasets.Features`` of a track dataset whose audio is at ``sampling_rate``."""
    return Features({"audio": Audio(sampling_rate=sampling_rate), **TRACK_FEATURE_TYPES})


def track_id(clip_id: str, start_seconds: float, label: str) -> str:
    """``{clip_id}_{start_ms}_{label slug}``: unique per track (one track per label of a clip segment)."""
    return f"{clip_id}_{int(round(start_seconds * 1000))}_{mid_slug(label)}"


def clip_key(row: dict) -> tuple[str, float]:
    """The clip segment a track row comes from (YouTube ids repeat across segments of one video)."""
    return row["clip_id"], row["start_seconds"]


DEFAULT_CONFIG = "default"


def split_config(split: str) -> str:
    """The card config holding ``split``: the accepted split is the ``default`` config and every other split (the
    rejected tracks) a config of its own, so ``load_dataset(repo)`` and the viewer's first table give clean tracks
    only, and ``load_dataset(repo, "rejected", split="rejected")`` the others."""
    return DEFAULT_CONFIG if split == ACCEPTED_SPLIT else split


def shard_name(split: str, index: int, count: int) -> str:
    """``{split}-XXXXX-of-YYYYY.parquet``; past 99,999 shards every number of the split widens alike, so that the
    names still sort in shard order."""
    width = max(5, len(str(count)))
    return f"{split}-{index:0{width}d}-of-{count:0{width}d}.parquet"


def shard_split(name: str) -> str | None:
    """The split a shard file name belongs to, or ``None`` when the name is not a shard's."""
    match = SHARD_NAME.match(name)
    return match["split"] if match else None


def local_shards(folder: Path, split: str) -> list[str]:
    """The parquet shards of ``split`` in a track dataset folder, in order."""
    return [str(path) for path in sorted((Path(folder) / DATA_DIR).glob(f"{split}-*.parquet"))]


COUNT_COLUMNS: tuple[str, ...] = ("label", "label_name", "origin", "re_sdr")
"""The columns :class:`TrackCounts` reads (never the audio)."""


@dataclass
class TrackCounts:
    """Tracks per split by class and by origin, and the mean Re-SDR of separated tracks.

    The one count of a track dataset: the engine's summary, the loop's table and ``stats`` all use it.
    """

    classes: dict[str, Counter] = field(default_factory=dict)
    """split -> ``(label, label_name)`` -> tracks."""
    origins: dict[str, Counter] = field(default_factory=dict)
    """split -> origin -> tracks."""
    separated_re_sdr: dict[str, list[float]] = field(default_factory=dict)
    """split -> [sum, count] of the Re-SDR of separated tracks."""

    def add(self, split: str, columns: dict[str, list]) -> None:
        """Count rows given as columns (``pyarrow.Table.to_pydict()`` of at least :data:`COUNT_COLUMNS`)."""
        self.classes.setdefault(split, Counter()).update(zip(columns["label"], columns["label_name"]))
        self.origins.setdefault(split, Counter()).update(columns["origin"])
        total = self.separated_re_sdr.setdefault(split, [0.0, 0])
        for origin, value in zip(columns["origin"], columns["re_sdr"]):
            if origin == ORIGIN_SEPARATED and value is not None:
                total[0] += value
                total[1] += 1

    def update(self, other: TrackCounts) -> None:
        """Add the counts of ``other``."""
        for split, classes in other.classes.items():
            self.classes.setdefault(split, Counter()).update(classes)
        for split, origins in other.origins.items():
            self.origins.setdefault(split, Counter()).update(origins)
        for split, (total, count) in other.separated_re_sdr.items():
            mine = self.separated_re_sdr.setdefault(split, [0.0, 0])
            mine[0] += total
            mine[1] += count

    def to_dict(self) -> dict:
        """A JSON-ready dict (:meth:`from_dict` reads it back)."""
        return {
            "classes": {split: [[label, name, count] for (label, name), count in classes.items()] for split, classes in self.classes.items()},
            "origins": {split: dict(origins) for split, origins in self.origins.items()},
            "separated_re_sdr": self.separated_re_sdr,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrackCounts:
        return cls(
            classes={split: Counter({(label, name): count for label, name, count in rows}) for split, rows in data["classes"].items()},
            origins={split: Counter(origins) for split, origins in data["origins"].items()},
            separated_re_sdr={split: list(value) for split, value in data["separated_re_sdr"].items()},
        )

    def tracks(self, split: str, origin: str | None = None) -> int:
        counts = self.origins.get(split, Counter())
        return counts[origin] if origin is not None else sum(counts.values())

    def per_class_name(self, split: str) -> dict[str, int]:
        """Tracks by display name, sorted by name."""
        named: Counter = Counter()
        for (_, name), count in self.classes.get(split, Counter()).items():
            named[name] += count
        return dict(sorted(named.items()))

    def mean_separated_re_sdr(self, split: str) -> float | None:
        total, count = self.separated_re_sdr.get(split, (0.0, 0))
        return total / count if count else None


def count_tracks(shards_by_split: dict[str, Iterable[str | Path]]) -> TrackCounts:
    """:class:`TrackCounts` of parquet files, reading only :data:`COUNT_COLUMNS`, one file at a time."""
    counts = TrackCounts()
    for split, shards in shards_by_split.items():
        for shard in shards:
            counts.add(split, pq.read_table(shard, columns=list(COUNT_COLUMNS)).to_pydict())
    return counts


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
