"""On-the-fly training mixtures from ClearSep track datasets.

A :class:`TrackCatalog` holds the metadata of every accepted track of one or more track datasets
(``clearsep_data.schema.track_features``) and decodes their audio on demand. A
:class:`MixtureSampler` turns it into micro-batches of mixtures with query targets. Each
micro-batch is a pure function of ``(seed, process_index, index)``, so training is reproducible,
resumes exactly from a step number alone, and every process of a distributed run draws its own
mixtures.

Three training strategies for engine-made (``separated``) tracks are built in, each switchable:

* quality-aware use: a separated track's weight is ``sigmoid((re_sisdr - centre) / width)``
  (single-source tracks, whose ``re_sisdr`` is null, weigh 1); the weight either scales the
  track's sampling probability (``quality="sample"``) or its loss (``quality="weight"``);
* absent queries: with probability ``silence_rate`` a query asks for a class that is not in the
  mixture and its target is silence;
* natural mixtures: with probability ``natural_rate`` an example is an original multi-label clip
  whose targets are its accepted separated tracks (see :class:`NaturalClips`).

Audio is decoded on first use; when the whole decoded dataset fits ``cache_bytes`` (float32, i.e.
``seconds * rate * 4`` bytes: 2 GiB holds ~9 h at 16 kHz) every waveform is kept in memory, else
each use decodes again (a 10 s FLAC track takes ~2 ms). Data-loader workers each hold their own cache.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from clearsep_data.audio import AudioError, decode_flac, fit_length, load_audio, resample
from clearsep_data.ontology import Ontology
from clearsep_data.schema import ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE

QUALITY_MODES = ("off", "sample", "weight")
_METADATA_COLUMNS = ("track_id", "clip_id", "start_seconds", "end_seconds", "label", "label_name", "clip_labels", "origin", "re_sisdr")


class TrackDataError(ValueError):
    """A track dataset that cannot be trained on, with the reason."""


def quality_weight(re_sisdr: np.ndarray, centre: float, width: float) -> np.ndarray:
    """``sigmoid((re_sisdr - centre) / width)``; 1 where ``re_sisdr`` is NaN (single-source tracks)."""
    weights = 1.0 / (1.0 + np.exp(-(np.asarray(re_sisdr, dtype=np.float64) - centre) / width))
    return np.where(np.isnan(re_sisdr), 1.0, weights)


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
        train = load_tracks(name, split="train")
    except Exception as error:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError...)
        raise TrackDataError(f"{name}: cannot load track dataset ({str(error).splitlines()[0]})") from None
    missing = [column for column in ("audio", *_METADATA_COLUMNS) if column not in train.column_names]
    if missing:
        raise TrackDataError(
            f"{name}: not a ClearSep track dataset, missing column(s) {', '.join(missing)} "
            f"(expected the features of clearsep_data.schema.track_features)"
        )
    audio_feature = train.features["audio"]
    if not isinstance(audio_feature, datasets.Audio) or audio_feature.sampling_rate is None:
        raise TrackDataError(f"{name}: column 'audio' must be an Audio feature with a sampling_rate")
    try:
        rejected = load_tracks(name, split="rejected").remove_columns("audio")
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
    re_sisdr: np.ndarray
    """NaN where null (single-source tracks)."""
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
        cls, sources: Sequence[TrackSource], vocabulary: Sequence[str], sampling_rate: int, cache_bytes: float
    ) -> TrackCatalog:
        """Index the tracks of ``sources``; every track label must be in ``vocabulary``."""
        mid_index = {mid: index for index, mid in enumerate(vocabulary)}
        columns: dict[str, list] = {name: [] for name in _METADATA_COLUMNS}
        rows: list[tuple[int, int]] = []
        rejected: set[tuple[str, int]] = set()
        for source_index, source in enumerate(sources):
            table = source.train.select_columns(list(_METADATA_COLUMNS)).to_dict()
            for name in _METADATA_COLUMNS:
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
            re_sisdr=np.asarray([np.nan if value is None else value for value in columns["re_sisdr"]], dtype=np.float64),
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

    def _related_mask(self, mid: str) -> np.ndarray:
        """Vocabulary entries equal to ``mid``, above it or below it."""
        related = {mid}
        if self.ontology is not None and mid in self.ontology:
            related |= self.ontology.ancestors(mid) | self.ontology.descendants(mid)
        mask = np.zeros(len(self.vocabulary), dtype=bool)
        mask[[self._index[m] for m in related if m in self._index]] = True
        return mask

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


# --------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixingConfig:
    """How training mixtures are drawn."""

    segment_samples: int
    batch_size: int
    queries_per_mixture: int = 2
    """Queries per mixture: the target's label, then the interferers' labels with their own targets."""
    min_interferers: int = 1
    max_interferers: int = 3
    snr_db: tuple[float, float] = (-5.0, 5.0)
    """Range of target-to-interferer level ratios (each interferer drawn independently)."""
    level_db: tuple[float, float] = (-30.0, -15.0)
    """Range of the target track's (natural clip's) RMS level in dBFS; the mixture is then kept below 0.99 peak."""
    silence_rate: float = 0.05
    natural_rate: float = 0.0
    quality: str = "weight"
    quality_centre: float = 5.0
    quality_width: float = 2.0

    def __post_init__(self):
        if self.quality not in QUALITY_MODES:
            raise ValueError(f"quality must be one of {', '.join(QUALITY_MODES)}, not {self.quality!r}")
        if not 0 <= self.min_interferers <= self.max_interferers:
            raise ValueError("need 0 <= min_interferers <= max_interferers")
        if not 1 <= self.queries_per_mixture <= 1 + self.max_interferers:
            raise ValueError(
                f"queries_per_mixture must be between 1 and 1 + max_interferers ({1 + self.max_interferers})"
            )
        for name in ("silence_rate", "natural_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]")
        if self.quality_width <= 0:
            raise ValueError("quality_width must be positive")


@dataclass
class Example:
    """One mixture with its queries (before batching)."""

    mixture: np.ndarray  # (S,)
    queries: list[int]  # vocabulary indices, Q
    targets: np.ndarray  # (Q, S)
    weights: np.ndarray  # (Q,)
    silent: list[bool]
    query_tracks: list[str]
    """Track id behind each query ('' for an absent-class query)."""
    mixture_tracks: list[str]
    labels: list[str]
    """MIDs of every sound in the mixture (an absent-class query must be exclusive with all of them)."""
    natural: bool = False


class MixtureSampler:
    """Draws micro-batches of mixtures deterministically from ``(seed, process_index, index)``.

    ``pool`` restricts the tracks it may use (a boolean mask over the catalog), e.g. to keep the
    evaluation tracks out of training. ``stream`` separates independent sequences that share a seed
    (training and evaluation).
    """

    def __init__(
        self,
        catalog: TrackCatalog,
        relations: LabelRelations,
        config: MixingConfig,
        *,
        seed: int,
        process_index: int = 0,
        pool: np.ndarray | None = None,
        natural: NaturalClips | None = None,
        stream: int = 0,
    ):
        self.catalog = catalog
        self.relations = relations
        self.config = config
        self.seed = seed
        self.process_index = process_index
        self.stream = stream
        self.pool = np.ones(len(catalog), dtype=bool) if pool is None else np.asarray(pool, dtype=bool)
        self.natural = natural if natural is not None and natural.clips else None
        if config.natural_rate > 0 and self.natural is None:
            raise TrackDataError(
                "natural mixtures were requested but no clip of the natural corpus has accepted separated "
                "tracks for all of its queries"
            )
        weights = quality_weight(catalog.re_sisdr, config.quality_centre, config.quality_width)
        self.loss_weights = weights if config.quality == "weight" else np.ones(len(catalog))
        self.draw_weights = (weights if config.quality == "sample" else np.ones(len(catalog))) * self.pool
        if not self.draw_weights.any():
            raise TrackDataError("no track to draw mixtures from")
        self._clip_codes = np.unique(np.asarray([f"{c}\0{s}" for c, s in catalog.clip_keys]), return_inverse=True)[1]
        label_counts = np.bincount(catalog.label_index[self.pool], minlength=len(catalog.vocabulary))
        exclusive_present = relations.exclusive & (label_counts > 0)[None, :]
        if config.min_interferers > 0 and not exclusive_present[catalog.label_index[self.pool]].any():
            raise TrackDataError(
                "no two tracks have mutually exclusive labels: cannot build mixtures with interferers "
                "(add data with other classes, or check the ontology)"
            )

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.process_index, self.stream, index])

    def batch(self, index: int) -> dict:
        """Micro-batch ``index``: tensors for the model plus per-query provenance."""
        rng = self.rng(index)
        examples = [self.example(rng) for _ in range(self.config.batch_size)]
        return collate(examples)

    def example(self, rng: np.random.Generator) -> Example:
        if self.natural is not None and rng.random() < self.config.natural_rate:
            example = self._natural_example(rng)
        else:
            example = self._synthetic_example(rng)
        if self.config.silence_rate > 0:
            self._absent_queries(example, rng)
        return example

    # -- synthetic -------------------------------------------------------------------------

    def _choose_sources(self, rng: np.random.Generator, attempts: int = 100) -> list[int]:
        """A target track and 1-3 interferers whose labels are mutually exclusive, from different clips."""
        config = self.config
        label_index = self.catalog.label_index
        needed = max(1 + config.min_interferers, config.queries_per_mixture)
        for _ in range(attempts):
            chosen = [self._draw(rng, self.draw_weights)]
            allowed = self.relations.exclusive[label_index[chosen[0]]].copy()
            n_interferers = int(rng.integers(needed - 1, config.max_interferers + 1))
            for _ in range(n_interferers):
                candidates = self.draw_weights * allowed[label_index]
                candidates[np.isin(self._clip_codes, self._clip_codes[chosen])] = 0.0  # a clip's tracks share leakage
                if not candidates.any():
                    break
                chosen.append(self._draw(rng, candidates))
                allowed &= self.relations.exclusive[label_index[chosen[-1]]]
            if len(chosen) >= needed:
                return chosen
        raise TrackDataError(
            f"could not find {needed} tracks with mutually exclusive labels in {attempts} draws: "
            "lower queries_per_mixture/min_interferers or add classes"
        )

    def _synthetic_example(self, rng: np.random.Generator) -> Example:
        config = self.config
        catalog = self.catalog
        chosen = self._choose_sources(rng)
        level = rng.uniform(*config.level_db)
        waveforms = [catalog.waveform(track) for track in chosen]
        sources = np.stack([self._crop(waveform, rng) for waveform in waveforms])
        gains_db = np.concatenate([[level], level - rng.uniform(*config.snr_db, size=len(chosen) - 1)])
        # Levels and SNRs refer to whole tracks, so a quiet stretch of a track stays quiet in its crop.
        sources = sources * (10 ** (gains_db / 20) / np.asarray([_rms(w) for w in waveforms]))[:, None]
        mixture = sources.sum(0)
        scale = _peak_scale(mixture)
        queries = chosen[: config.queries_per_mixture]
        return Example(
            mixture=(mixture * scale).astype(np.float32),
            queries=[int(catalog.label_index[track]) for track in queries],
            targets=(sources[: len(queries)] * scale).astype(np.float32),
            weights=self.loss_weights[queries].astype(np.float32),
            silent=[False] * len(queries),
            query_tracks=[catalog.track_ids[track] for track in queries],
            mixture_tracks=[catalog.track_ids[track] for track in chosen],
            labels=[catalog.vocabulary[catalog.label_index[track]] for track in chosen],
        )

    def _crop(self, waveform: np.ndarray, rng: np.random.Generator, attempts: int = 4) -> np.ndarray:
        """A random ``segment_samples`` crop, preferring one that is not near-silent.

        Shorter waveforms are placed at a random offset in silence.
        """
        length = self.config.segment_samples
        if waveform.shape[-1] <= length:
            offset = int(rng.integers(0, length - waveform.shape[-1] + 1))
            return np.pad(waveform, (offset, length - waveform.shape[-1] - offset))
        floor = 0.1 * _rms(waveform)
        best, best_rms = None, -1.0
        for _ in range(attempts):
            start = int(rng.integers(0, waveform.shape[-1] - length + 1))
            crop = waveform[start : start + length]
            rms = float(_rms(crop))
            if rms > best_rms:
                best, best_rms = crop, rms
            if rms >= floor:
                break
        return best

    def _draw(self, rng: np.random.Generator, weights: np.ndarray) -> int:
        cumulative = np.cumsum(weights)
        return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))

    # -- natural ---------------------------------------------------------------------------

    def _natural_example(self, rng: np.random.Generator) -> Example:
        natural = self.natural
        catalog = self.catalog
        index = int(rng.integers(len(natural.clips)))
        item = natural.clips[index]
        clip = natural.waveform(index)
        length = self.config.segment_samples
        tracks = [fit_length(catalog.waveform(track), clip.shape[-1]) for track in item.tracks]
        stacked = np.stack([clip, *tracks])
        if clip.shape[-1] > length:
            start = int(rng.integers(0, clip.shape[-1] - length + 1))
            stacked = stacked[:, start : start + length]
        else:
            stacked = fit_length(stacked, length)
        order = rng.permutation(len(tracks))[: self.config.queries_per_mixture]
        stacked = stacked * (10 ** (rng.uniform(*self.config.level_db) / 20) / _rms(clip))
        stacked = stacked * _peak_scale(stacked[0])
        queries = [item.tracks[i] for i in order]
        example = Example(
            mixture=stacked[0].astype(np.float32),
            queries=[int(catalog.label_index[track]) for track in queries],
            targets=stacked[1 + order].astype(np.float32),
            weights=self.loss_weights[queries].astype(np.float32),
            silent=[False] * len(queries),
            query_tracks=[catalog.track_ids[track] for track in queries],
            mixture_tracks=[catalog.track_ids[track] for track in item.tracks],
            labels=list(item.clip.labels),
            natural=True,
        )
        missing = self.config.queries_per_mixture - len(queries)
        if missing > 0:  # a clip with fewer sources than queries per mixture: ask for absent classes
            absent = np.flatnonzero(self.relations.absent_mask(example.labels))
            if not absent.size:
                raise TrackDataError(f"{item.clip.where}: every vocabulary class relates to the clip's labels")
            length = stacked.shape[-1]
            example.queries += [int(q) for q in rng.choice(absent, size=missing)]
            example.targets = np.concatenate([example.targets, np.zeros((missing, length), np.float32)])
            example.weights = np.concatenate([example.weights, np.ones(missing, np.float32)])
            example.silent += [True] * missing
            example.query_tracks += [""] * missing
        return example

    # -- absent queries --------------------------------------------------------------------

    def _absent_queries(self, example: Example, rng: np.random.Generator) -> None:
        """Replace each query, with probability ``silence_rate``, by an absent class with a silent target.

        A mixture in which every vocabulary class (or a relative) sounds keeps its queries.
        """
        replace = rng.random(len(example.queries)) < self.config.silence_rate
        if not replace.any():
            return
        absent = self.relations.absent_mask(example.labels)
        if not absent.any():
            return
        for slot in np.flatnonzero(replace):
            example.queries[slot] = int(rng.choice(np.flatnonzero(absent)))
            example.targets[slot] = 0.0
            example.weights[slot] = 1.0
            example.silent[slot] = True
            example.query_tracks[slot] = ""


def _rms(signal: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(signal, dtype=np.float64), axis=-1)) + 1e-8


def _peak_scale(mixture: np.ndarray, peak: float = 0.99) -> float:
    """The gain that keeps ``mixture`` below ``peak`` (1 when it already is)."""
    top = float(np.max(np.abs(mixture))) if mixture.size else 0.0
    return min(1.0, peak / top) if top > 0 else 1.0


def collate(examples: Sequence[Example]) -> dict:
    """Stack examples into the model's inputs (numpy) plus provenance lists."""
    return {
        "input_values": np.stack([e.mixture for e in examples]),
        "query_ids": np.asarray([e.queries for e in examples], dtype=np.int64),
        "target_values": np.stack([e.targets for e in examples]),
        "target_weights": np.stack([e.weights for e in examples]).astype(np.float32),
        "silent": np.asarray([e.silent for e in examples], dtype=bool),
        "natural": np.asarray([e.natural for e in examples], dtype=bool),
        "query_tracks": [e.query_tracks for e in examples],
    }


class MixtureStream(torch.utils.data.IterableDataset):
    """Micro-batches ``start, start + 1, ...`` of a sampler, as an ``IterableDataset``.

    With ``DataLoader(stream, batch_size=None, num_workers=W)`` worker ``w`` produces batches
    ``start + w, start + w + W, ...`` and the loader's round-robin puts them back in order, so the
    sequence does not depend on ``W``.
    """

    def __init__(self, sampler: MixtureSampler, start: int = 0, stop: int | None = None):
        self.sampler = sampler
        self.start = start
        self.stop = stop

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        offset, stride = (info.id, info.num_workers) if info is not None else (0, 1)
        index = self.start + offset
        while self.stop is None or index < self.stop:
            yield self.sampler.batch(index)
            index += stride


def seconds_to_samples(seconds: float, sampling_rate: int) -> int:
    return int(math.ceil(seconds * sampling_rate))
