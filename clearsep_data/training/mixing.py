"""On-the-fly training mixtures from ClearSep track datasets.

A :class:`MixtureSampler` turns a :class:`~clearsep_data.training.catalog.TrackCatalog` into
micro-batches of mixtures with query targets. Each micro-batch is a pure function of
``(seed, process_index, index)``, so training is reproducible, resumes exactly from a step number
alone, and every process of a distributed run draws its own mixtures.

Three training strategies for engine-made (``separated``) tracks are built in, each switchable:

* quality-aware use: a separated track's weight is ``sigmoid((score - centre) / width)`` of its quality
  score (its clip's ``re_sisdr``, or its own ``predicted_si_sdr``; single-source tracks, whose scores
  are null, weigh 1); the weight either scales the track's sampling probability (``quality="sample"``)
  or its loss (``quality="weight"``);
* absent queries: with probability ``silence_rate`` a query asks for a class that is not in the
  mixture and its target is silence;
* parent queries: with probability ``parent_rate`` a query asks for a class of the vocabulary above
  its track's label (``Dog`` for a ``Bark`` track) and its target is the sum of every source of the
  mixture whose label is that class or lies below it (the engine's queries stay mutually exclusive);
* natural mixtures: with probability ``natural_rate`` an example is an original multi-label clip
  whose targets are its accepted separated tracks (see
  :class:`~clearsep_data.training.catalog.NaturalClips`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clearsep_data.audio import fit_length
from clearsep_data.training.augment import AugmentConfig, Augmenter
from clearsep_data.training.catalog import LabelRelations, NaturalClips, TrackCatalog, TrackDataError

def quality_weight(score: np.ndarray, centre: float, width: float) -> np.ndarray:
    """``sigmoid((score - centre) / width)``; 1 where ``score`` is NaN (single-source tracks)."""
    weights = 1.0 / (1.0 + np.exp(-(np.asarray(score, dtype=np.float64) - centre) / width))
    return np.where(np.isnan(score), 1.0, weights)


# --------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixingConfig:
    """How training mixtures are drawn; made by :meth:`TrainingArguments.mixing_config`, whose
    :meth:`~TrainingArguments.validate` checks the settings."""

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
    parent_rate: float = 0.0
    natural_rate: float = 0.0
    balance_classes: bool = False
    """Draw tracks with weights that sum to the same for every class (each class as likely), not one per track."""
    quality: str = "weight"
    quality_centre: float = 5.0
    quality_width: float = 2.0
    augment: AugmentConfig | None = None
    """Augmentation of each source of a synthetic mixture (:mod:`~clearsep_data.training.augment`); ``None``: off."""


@dataclass
class Example:
    """One mixture with its queries (before batching)."""

    mixture: np.ndarray  # (S,)
    queries: list[int]  # vocabulary indices, Q
    targets: np.ndarray  # (Q, S)
    weights: np.ndarray  # (Q,)
    silent: list[bool]
    query_tracks: list[str]
    """Track ids behind each query, joined by '+' for a parent query ('' for an absent-class query)."""
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
        self.augmenter = Augmenter(config.augment) if config.augment is not None else None
        if config.natural_rate > 0 and self.natural is None:
            raise TrackDataError(
                "natural mixtures were requested but no clip of the natural corpus has accepted separated "
                "tracks for all of its queries"
            )
        weights = quality_weight(catalog.quality, config.quality_centre, config.quality_width)
        self.loss_weights = weights if config.quality == "weight" else np.ones(len(catalog))
        self.draw_weights = (weights if config.quality == "sample" else np.ones(len(catalog))) * self.pool
        if not self.draw_weights.any():
            raise TrackDataError("no track to draw mixtures from")
        if config.balance_classes:
            per_class = np.bincount(catalog.label_index, weights=self.draw_weights, minlength=len(catalog.vocabulary))
            self.draw_weights = self.draw_weights / np.where(per_class > 0, per_class, 1.0)[catalog.label_index]
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
        return {
            **collate(examples),
            "presence_labels": np.stack([self.relations.presence_row(example.labels) for example in examples]),
        }

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
        sources = np.stack([self._source(waveform, rng) for waveform in waveforms])
        gains_db = np.concatenate([[level], level - rng.uniform(*config.snr_db, size=len(chosen) - 1)])
        # Levels and SNRs refer to whole tracks, so a quiet stretch of a track stays quiet in its crop.
        sources = sources * (10 ** (gains_db / 20) / np.asarray([_rms(w) for w in waveforms]))[:, None]
        mixture = sources.sum(0)
        scale = _peak_scale(mixture)
        return Example(
            mixture=(mixture * scale).astype(np.float32),
            **self._queries(rng, chosen, sources * scale, config.queries_per_mixture),
            mixture_tracks=[catalog.track_ids[track] for track in chosen],
            labels=[catalog.vocabulary[catalog.label_index[track]] for track in chosen],
        )

    def _queries(self, rng: np.random.Generator, tracks: Sequence[int], sources: np.ndarray, count: int) -> dict:
        """Queries, targets, weights and provenance for the first ``count`` of a mixture's mutually exclusive sources.

        With probability ``parent_rate`` a query is lifted to a vocabulary class above its track's label; a query's
        target is the sum of the sources it covers (its own track, or every track below the parent), its weight the
        lowest of theirs.
        """
        labels = self.catalog.label_index[np.asarray(tracks)]
        queries = labels[:count].copy()
        lifted = rng.random(len(queries)) < self.config.parent_rate if self.config.parent_rate > 0 else []
        for slot in np.flatnonzero(lifted):
            parents = self.relations.parents_of(int(queries[slot]))
            if parents.size:
                queries[slot] = int(rng.choice(parents))
        covered = self.relations.covers[queries][:, labels]  # (Q, sources)
        weights = np.where(covered, self.loss_weights[np.asarray(tracks)][None], np.inf).min(axis=1)
        return {
            "queries": [int(query) for query in queries],
            "targets": (covered.astype(np.float64) @ sources.astype(np.float64)).astype(np.float32),
            "weights": weights.astype(np.float32),
            "silent": [False] * len(queries),
            "query_tracks": [
                "+".join(self.catalog.track_ids[tracks[i]] for i in np.flatnonzero(row)) for row in covered
            ],
        }

    def _source(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A ``segment_samples`` crop of ``waveform``, augmented when the config says so."""
        length = self.config.segment_samples
        if self.augmenter is None:
            return self._crop(waveform, rng, length)
        speed = self.augmenter.speed(rng)
        return self.augmenter(self._crop(waveform, rng, Augmenter.crop_length(length, speed)), length, speed, rng)

    @staticmethod
    def _crop(waveform: np.ndarray, rng: np.random.Generator, length: int, attempts: int = 4) -> np.ndarray:
        """A random ``length`` crop, preferring one that is not near-silent.

        Shorter waveforms are placed at a random offset in silence.
        """
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
        order = rng.permutation(len(tracks))
        stacked = stacked * (10 ** (rng.uniform(*self.config.level_db) / 20) / _rms(clip))
        stacked = stacked * _peak_scale(stacked[0])
        example = Example(
            mixture=stacked[0].astype(np.float32),
            **self._queries(rng, [item.tracks[i] for i in order], stacked[1 + order], self.config.queries_per_mixture),
            mixture_tracks=[catalog.track_ids[track] for track in item.tracks],
            labels=list(item.clip.labels),
            natural=True,
        )
        missing = self.config.queries_per_mixture - len(example.queries)
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
