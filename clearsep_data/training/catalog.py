"""The training material: ClearSep track datasets, the relations between their labels, natural clips.

A :class:`TrackCatalog` holds the metadata of every accepted track of one or more track datasets
(``clearsep_data.tracks.track_features``) and decodes their audio on demand; :class:`LabelRelations`
says which labels may sound together in one mixture; :class:`NaturalClips` finds the original
multi-label clips whose every query has an accepted separated track. The mixtures drawn from them
are made in :mod:`clearsep_data.training.mixing`.

Audio is decoded on first use; when the whole decoded dataset fits ``cache_bytes`` (float32, i.e.
``seconds * rate * 4`` bytes: 2 GiB holds ~9 h at 16 kHz) every waveform is kept in memory, else
each use decodes again (a 10 s FLAC track takes ~2 ms). Data-loader workers each hold their own cache.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from clearsep_data.audio import AudioError, decode_flac, load_audio, resample
from clearsep_data.errors import ClearSepError
from clearsep_data.ontology import Ontology
from clearsep_data.tracks import ACCEPTED_SPLIT, ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE, REJECTED_SPLIT

_METADATA_COLUMNS = ("track_id", "clip_id", "start_seconds", "end_seconds", "label", "label_name", "clip_labels", "origin")


class TrackDataError(ClearSepError):
    """A track dataset that cannot be trained on, with the reason."""


# --------------------------------------------------------------------------------------------
# Track datasets
# --------------------------------------------------------------------------------------------


@dataclass
class TrackSource:
    """One loaded track dataset: its accepted split with undecoded audio, and its rejected split."""

    name: str
    train: object  # datasets.Dataset, audio column not decoded
    rejected: object | None
    sampling_rate: int


def load_track_dataset(name: str) -> TrackSource:
    """Load a track dataset (local folder or Hub id, see :func:`clearsep_data.tracks.load_tracks`), audio left encoded."""
    import datasets

    from clearsep_data.tracks import load_tracks

    try:
        train = load_tracks(name, split=ACCEPTED_SPLIT)
    except Exception as error:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError...)
        raise TrackDataError(f"{name}: cannot load track dataset ({str(error).splitlines()[0]})") from None
    missing = [column for column in ("audio", *_METADATA_COLUMNS) if column not in train.column_names]
    if missing:
        raise TrackDataError(
            f"{name}: not a ClearSep track dataset, missing column(s) {', '.join(missing)} "
            f"(expected the features of clearsep_data.tracks.track_features)"
        )
    audio_feature = train.features["audio"]
    if not isinstance(audio_feature, datasets.Audio) or audio_feature.sampling_rate is None:
        raise TrackDataError(f"{name}: column 'audio' must be an Audio feature with a sampling_rate")
    try:
        rejected = load_tracks(name, split=REJECTED_SPLIT).remove_columns("audio")
    except (FileNotFoundError, ValueError):  # no rejected split: nothing was rejected, or it was not kept
        rejected = None
    return TrackSource(
        name=name,
        train=train.cast_column("audio", datasets.Audio(sampling_rate=audio_feature.sampling_rate, decode=False)),
        rejected=rejected,
        sampling_rate=int(audio_feature.sampling_rate),
    )


class AudioStore:
    """Decodes waveforms at one sampling rate, memoising them only while they fit ``cache_bytes``.

    Whether to cache is decided once, up front, from the total decoded size the caller announces:
    a small dataset is decoded once per track (float32 in memory), a large one on every use.
    """

    def __init__(self, sampling_rate: int, expected_bytes: float, cache_bytes: float):
        self.sampling_rate = sampling_rate
        self.caching = expected_bytes <= cache_bytes
        self._cache: dict[object, np.ndarray] = {}

    def get(self, key: object, decode) -> np.ndarray:
        """The waveform for ``key``, from the cache or from ``decode()``."""
        waveform = self._cache.get(key)
        if waveform is None:
            waveform = decode()
            if self.caching:
                self._cache[key] = waveform
        return waveform


@dataclass
class TrackCatalog:
    """Metadata of every accepted track of the training datasets, with on-demand audio."""

    sources: list[TrackSource]
    vocabulary: list[str]
    """Query MIDs in model index order."""
    track_ids: list[str]
    clip_keys: list[tuple[str, int]]
    """``(clip_id, start in ms)`` of each track: tracks of one clip share it."""
    label_index: np.ndarray
    """Index of each track's label in ``vocabulary``."""
    origins: list[str]
    quality: np.ndarray
    """Each track's quality score (the ``quality_score`` field it was indexed with), NaN where null (single-source
    tracks)."""
    rows: list[tuple[int, int]]
    """``(source index, row)`` of each track."""
    rejected_clips: set[tuple[str, int]]
    """Clips with at least one track in a ``rejected`` split."""
    durations: np.ndarray
    audio: AudioStore = field(repr=False)

    def __len__(self) -> int:
        return len(self.track_ids)

    @classmethod
    def from_sources(
        cls, sources: Sequence[TrackSource], vocabulary: Sequence[str], sampling_rate: int, cache_bytes: float,
        quality_score: str = "re_sisdr",
    ) -> TrackCatalog:
        """Index the tracks of ``sources``, with the field ``quality_score`` as their quality; every track label must
        be in ``vocabulary``."""
        mid_index = {mid: index for index, mid in enumerate(vocabulary)}
        names = (*_METADATA_COLUMNS, quality_score)
        columns: dict[str, list] = {name: [] for name in names}
        rows: list[tuple[int, int]] = []
        rejected: set[tuple[str, int]] = set()
        for source_index, source in enumerate(sources):
            if quality_score not in source.train.column_names:
                raise TrackDataError(f"{source.name}: no '{quality_score}' field (a dataset built before it existed?): "
                                     "train with another quality score (--quality-score re_sisdr)")
            table = source.train.select_columns(list(names)).to_dict()
            for name in names:
                columns[name].extend(table[name])
            rows.extend((source_index, row) for row in range(len(source.train)))
            origins = set(table["origin"]) - {ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE}
            if origins:
                raise TrackDataError(f"{source.name}: unknown origin(s) {sorted(origins)} in split 'train'")
            if source.rejected is not None:
                rejected.update(
                    zip(source.rejected["clip_id"], (_milliseconds(s) for s in source.rejected["start_seconds"]))
                )
        unknown = sorted(set(columns["label"]) - set(mid_index))
        if unknown:
            raise TrackDataError(f"track label(s) not in the model vocabulary: {', '.join(unknown)}")
        if not rows:
            raise TrackDataError("the track datasets hold no training tracks")
        durations = np.asarray(columns["end_seconds"], dtype=np.float64) - np.asarray(columns["start_seconds"])
        expected_bytes = float(np.clip(durations, 0, None).sum()) * sampling_rate * 4
        return cls(
            sources=list(sources),
            vocabulary=list(vocabulary),
            track_ids=columns["track_id"],
            clip_keys=[(clip, _milliseconds(start)) for clip, start in zip(columns["clip_id"], columns["start_seconds"])],
            label_index=np.asarray([mid_index[label] for label in columns["label"]], dtype=np.int64),
            origins=columns["origin"],
            quality=np.asarray([np.nan if value is None else value for value in columns[quality_score]], dtype=np.float64),
            rows=rows,
            rejected_clips=rejected,
            durations=durations,
            audio=AudioStore(sampling_rate, expected_bytes, cache_bytes),
        )

    def waveform(self, track: int) -> np.ndarray:
        """Mono float32 waveform of ``track`` at the catalog's sampling rate."""
        return self.audio.get(track, lambda: self._decode(track))

    def _decode(self, track: int) -> np.ndarray:
        source_index, row = self.rows[track]
        source = self.sources[source_index]
        payload = source.train[row]["audio"]
        where = f"{source.name}[train][{row}] ({self.track_ids[track]})"
        try:
            if payload.get("bytes"):
                waveform, rate = decode_flac(payload["bytes"])
                return resample(waveform, rate, self.audio.sampling_rate).astype(np.float32, copy=False)
            if payload.get("path"):
                return load_audio(payload["path"], self.audio.sampling_rate)
        except (AudioError, RuntimeError) as error:
            raise TrackDataError(f"{where}: cannot decode audio ({error})") from None
        raise TrackDataError(f"{where}: audio has neither bytes nor a path")

    def holdout_mask(self, fraction: float) -> np.ndarray:
        """Tracks of a stable ``fraction`` of clips (by a hash of the clip id), held out for evaluation."""
        threshold = int(round(fraction * 10_000))
        return np.asarray([zlib.crc32(clip.encode()) % 10_000 < threshold for clip, _ in self.clip_keys], dtype=bool)


def _milliseconds(seconds: float) -> int:
    return int(round(float(seconds) * 1000))


def labels_in(sources: Sequence[TrackSource]) -> dict[str, str]:
    """``{mid: display name}`` of every track label in the accepted splits of ``sources``."""
    names: dict[str, str] = {}
    for source in sources:
        for mid, name in zip(source.train["label"], source.train["label_name"]):
            names.setdefault(mid, name or mid)
    return names


# --------------------------------------------------------------------------------------------
# Label relations
# --------------------------------------------------------------------------------------------


class LabelRelations:
    """Which labels may sound together as different sources of one mixture.

    Two labels are *exclusive* when they differ and, given an ontology, neither is an ancestor of
    the other (a ``Bark`` track must not serve as interference for a ``Dog`` query). Without an
    ontology, labels are exclusive iff they differ.
    """

    def __init__(self, vocabulary: Sequence[str], ontology: Ontology | None = None):
        self.vocabulary = list(vocabulary)
        self.ontology = ontology
        self._index = {mid: index for index, mid in enumerate(self.vocabulary)}
        self.exclusive = np.stack([~self._related_mask(mid) for mid in self.vocabulary]) if self.vocabulary else np.zeros((0, 0), bool)
        self.covers = np.stack([self._related_mask(mid, above=False) for mid in self.vocabulary]) if self.vocabulary else np.zeros((0, 0), bool)
        """``covers[q, l]``: label ``l`` is ``q`` or lies below it, so a query for ``q`` asks for a sound labelled ``l``."""

    def _related_mask(self, mid: str, above: bool = True) -> np.ndarray:
        """Vocabulary entries equal to ``mid``, below it or (``above``) above it."""
        related = {mid}
        if self.ontology is not None and mid in self.ontology:
            related |= self.ontology.descendants(mid) | (self.ontology.ancestors(mid) if above else set())
        mask = np.zeros(len(self.vocabulary), dtype=bool)
        mask[[self._index[m] for m in related if m in self._index]] = True
        return mask

    def parents_of(self, label: int) -> np.ndarray:
        """Vocabulary indices of the classes above vocabulary entry ``label`` (its ancestors in the vocabulary)."""
        above = self.covers[:, label].copy()
        above[label] = False
        return np.flatnonzero(above)

    def presence_row(self, mids: Sequence[str]) -> np.ndarray:
        """Per vocabulary entry, whether a mixture of sounds labelled ``mids`` holds it: 1 for a label or a class above
        one, 0 for a class unrelated to all of them (:meth:`absent_mask`), -1 for a class below one (unknown: a ``Dog``
        sound may or may not be a ``Bark``). The presence head's training targets."""
        row = np.where(self.absent_mask(mids), 0, -1).astype(np.int8)
        for mid in mids:
            index = self._index.get(mid)
            if index is not None:
                row[self.covers[:, index]] = 1
            else:  # a label outside the vocabulary: the classes above it
                row[self._related_mask(mid) & ~self._related_mask(mid, above=False)] = 1
        return row

    def absent_mask(self, mids: Sequence[str]) -> np.ndarray:
        """Vocabulary entries exclusive with every one of ``mids`` (MIDs inside or outside the vocabulary)."""
        mask = np.ones(len(self.vocabulary), dtype=bool)
        for mid in mids:
            index = self._index.get(mid)
            mask &= self.exclusive[index] if index is not None else ~self._related_mask(mid)
        return mask


# --------------------------------------------------------------------------------------------
# Natural mixtures
# --------------------------------------------------------------------------------------------


@dataclass
class NaturalClip:
    """An original multi-label clip of the natural corpus and its accepted separated tracks."""

    clip: object  # clearsep_data.corpus.Clip
    tracks: list[int]
    """Catalog indices of its accepted separated tracks, one per query."""


class NaturalClips:
    """The clips of a natural corpus that can serve as natural training mixtures.

    A clip qualifies when the track datasets hold an accepted separated track for every one of its
    queries (``ontology.select_queries`` of its labels, lifted to the vocabulary; no label outside
    it), and none of its tracks sits in a ``rejected`` split: only then are its targets complete.
    """

    def __init__(
        self, corpus, catalog: TrackCatalog, clips: list[NaturalClip], skipped: dict[str, int], cache_bytes: float
    ):
        self.corpus = corpus
        self.catalog = catalog
        self.clips = clips
        self.skipped = skipped
        """Why other corpus clips were not used, with counts."""
        expected = sum(item.clip.duration for item in clips) * catalog.audio.sampling_rate * 4
        self.audio = AudioStore(catalog.audio.sampling_rate, expected, cache_bytes)

    @classmethod
    def from_corpus(
        cls, corpus, catalog: TrackCatalog, cache_bytes: float, pool: np.ndarray | None = None
    ) -> NaturalClips:
        """Match the clips of ``corpus`` (a ``clearsep_data.corpus.Corpus``) to the catalog's separated tracks."""
        from clearsep_data.corpus import Skip

        separated: dict[tuple[str, int], list[int]] = {}
        for track, (key, origin) in enumerate(zip(catalog.clip_keys, catalog.origins)):
            if origin == ORIGIN_SEPARATED and (pool is None or pool[track]):
                separated.setdefault(key, []).append(track)
        vocabulary = set(catalog.vocabulary)
        clips: list[NaturalClip] = []
        skipped: dict[str, int] = {}

        def skip(reason: str) -> None:
            skipped[reason] = skipped.get(reason, 0) + 1

        for item in corpus:
            if isinstance(item, Skip):
                skip("unreadable corpus row")
                continue
            key = (item.clip_id, _milliseconds(item.start_seconds))
            tracks = separated.get(key)
            if not tracks:
                skip("no separated tracks")
                continue
            if key in catalog.rejected_clips:
                skip("a track of the clip was rejected")
                continue
            selection = corpus.ontology.select_queries(item.labels, vocabulary)
            accepted = {catalog.vocabulary[catalog.label_index[track]]: track for track in tracks}
            if selection.out_of_vocabulary or selection.unknown or not set(selection.queries) <= set(accepted):
                skip("not every query has an accepted track")
                continue
            clips.append(NaturalClip(clip=item, tracks=[accepted[query] for query in selection.queries]))
        return cls(corpus, catalog, clips, skipped, cache_bytes)

    def waveform(self, index: int) -> np.ndarray:
        item = self.clips[index].clip
        return self.audio.get(index, lambda: self.corpus.load(item, self.audio.sampling_rate))
