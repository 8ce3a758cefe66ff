"""Evaluate a separation model against ground-truth references on a benchmark split
(:mod:`clearsep_data.benchmark_folder`: an AudioSet-style folder with ``references/manifest.csv``).

Each clip's labels are reduced to the model's queries with :meth:`Ontology.select_queries`. A
query's target is the sum of the references whose label is the query or lies below it (a label
outside the model's vocabulary is lifted to its nearest ancestor inside it, as for the queries);
references matching no query (background, events the model cannot query) are interference. Every
(clip, query) pair with a target is one *item*, scored with SDR and SI-SDR, and their improvements
(SDRi, SI-SDRi) over the unprocessed mixture. Two reference rows frame the model's numbers: the
mixture itself (SDRi = 0 by construction) and an oracle ideal ratio mask (the ceiling of a
magnitude-masking separator on the model's STFT). Parent queries (``Dog`` on a ``Bark`` clip) and
queries for absent classes are asked too and summarised apart (:mod:`clearsep_data.query_kinds`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from clearsep_data.audio import AudioError, fit_length, load_audio
from clearsep_data.benchmark_folder import BACKGROUND, REFERENCE_MANIFEST, Benchmark, Reference
from clearsep_data.corpus import Clip, Corpus, Skip
from clearsep_data.metrics import sdr, separation_scores, si_sdr
from clearsep_data.modeling.separation_output import level_db
from clearsep_data.query_kinds import LABEL, PARENT, AbsentScore, absent_queries, absent_summary, parent_queries, parent_summary

if TYPE_CHECKING:
    from clearsep_data.modeling import ClearSepModel

METRICS = ("sdr", "si_sdr", "sdri", "si_sdri")
EVAL_FILE = "eval.json"
"""A model folder's evaluation, beside its weights: ``push model`` puts it in the model card."""
LENGTH_TOLERANCE_SECONDS = 0.01
SILENCE_PEAK = 1 / 32768
"""A reference whose peak is below one 16-bit step is silent: no metric is defined against it."""


@dataclass(frozen=True)
class ItemScore:
    """The scores of one query of one clip, in dB."""

    clip_id: str
    query: str
    """The query's MID."""
    name: str
    """The query's display name."""
    sdr: float
    si_sdr: float
    mixture_sdr: float
    mixture_si_sdr: float
    oracle_sdr: float | None = None
    oracle_si_sdr: float | None = None
    kind: str = LABEL
    """``label`` (one of the clip's exclusive queries) or ``parent`` (a class above one of them)."""
    child: str | None = None
    """For a parent query covering one query of the clip: that query's MID."""

    @property
    def sdri(self) -> float:
        return self.sdr - self.mixture_sdr

    @property
    def si_sdri(self) -> float:
        return self.si_sdr - self.mixture_si_sdr

    def to_dict(self) -> dict:
        return {**asdict(self), "sdri": self.sdri, "si_sdri": self.si_sdri}


def _row(sdr_values: Sequence[float], si_sdr_values: Sequence[float], items: Sequence[ItemScore]) -> dict[str, float]:
    """Mean SDR, SI-SDR and their improvements over the mixture for the given per-item values."""
    sdr_mean = float(np.mean(sdr_values))
    si_sdr_mean = float(np.mean(si_sdr_values))
    return {
        "sdr": sdr_mean,
        "si_sdr": si_sdr_mean,
        "sdri": sdr_mean - float(np.mean([item.mixture_sdr for item in items])),
        "si_sdri": si_sdr_mean - float(np.mean([item.mixture_si_sdr for item in items])),
    }


@dataclass
class EvaluationResult:
    """Per-item scores of one evaluation run, the clips it skipped, and their summaries."""

    model: str
    dataset: str
    split: str
    sampling_rate: int
    n_fft: int
    hop_length: int
    items: list[ItemScore] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    absent: list[AbsentScore] = field(default_factory=list)

    @property
    def labels(self) -> list[ItemScore]:
        """The items of the clips' own (mutually exclusive) queries, which the metrics summarise."""
        return [item for item in self.items if item.kind == LABEL]

    @property
    def num_items(self) -> int:
        return len(self.labels)

    @property
    def num_clips(self) -> int:
        """Clips with at least one scored query."""
        return len({item.clip_id for item in self.items})

    @property
    def metrics(self) -> dict[str, float] | None:
        """Mean SDR, SI-SDR, SDRi and SI-SDRi of the model over all items (``None`` if no item)."""
        items = self.labels
        if not items:
            return None
        return _row([i.sdr for i in items], [i.si_sdr for i in items], items)

    @property
    def mixture(self) -> dict[str, float] | None:
        """The unprocessed mixture as the estimate: SDRi and SI-SDRi are 0 by construction."""
        items = self.labels
        if not items:
            return None
        return _row([i.mixture_sdr for i in items], [i.mixture_si_sdr for i in items], items)

    @property
    def oracle(self) -> dict[str, float] | None:
        """The ideal ratio mask on the model's STFT (``None`` when not computed)."""
        items = self.labels
        if not items or items[0].oracle_sdr is None:
            return None
        return _row([i.oracle_sdr for i in items], [i.oracle_si_sdr for i in items], items)

    @property
    def per_class(self) -> dict[str, dict]:
        """``{display name: {"mid", "count", "sdr", "si_sdr", "sdri", "si_sdri"}}``, by decreasing count."""
        groups: dict[str, list[ItemScore]] = {}
        for item in self.labels:
            groups.setdefault(item.name, []).append(item)
        ordered = sorted(groups.items(), key=lambda pair: (-len(pair[1]), pair[0]))
        return {
            name: {
                "mid": items[0].query,
                "count": len(items),
                **_row([i.sdr for i in items], [i.si_sdr for i in items], items),
            }
            for name, items in ordered
        }

    def to_dict(self, include_items: bool = False) -> dict:
        """The summary read by the model card (``eval.json``); per-item scores on request."""
        oracle = self.oracle
        summary = {
            "model": self.model,
            "dataset": self.dataset,
            "split": self.split,
            "sampling_rate": self.sampling_rate,
            "num_clips": self.num_clips,
            "num_items": self.num_items,
            "metrics": self.metrics,
            "per_class": self.per_class,
            "oracle": None
            if oracle is None
            else {"method": "ideal ratio mask", "n_fft": self.n_fft, "hop_length": self.hop_length, **oracle},
            "mixture": self.mixture,
            "parents": parent_summary(self.items),
            "absent": absent_summary(self.absent),
            "num_skipped": len(self.skipped),
            "skipped": [skip.to_dict() for skip in self.skipped],
        }
        if include_items:
            summary["items"] = [item.to_dict() for item in self.items]
            summary["absent_items"] = [score.to_dict() for score in self.absent]
        return summary

    def save(self, path: str | os.PathLike, include_items: bool = False) -> Path:
        """Write :meth:`to_dict` to ``path`` (parent folders created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(include_items), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


@dataclass
class _Prepared:
    """A clip ready to separate: its mixture, queries and the target of each query."""

    clip: Clip
    mixture: np.ndarray
    queries: list[str]
    targets: np.ndarray  # (Q, T)
    kinds: list[str]
    children: list[str | None]
    absent: list[str]
    """Classes the clip does not hold, asked after ``queries``."""


def _assign_references(
    corpus: Corpus, references: list[Reference], queries: Sequence[str], vocabulary: set[str]
) -> dict[str, list[Reference]]:
    """Group a clip's references under the query each one answers (others are interference)."""
    ontology = corpus.ontology
    query_set = set(queries)
    assigned: dict[str, list[Reference]] = {query: [] for query in queries}
    for reference in references:
        label = reference.label
        if label == BACKGROUND or label not in ontology:
            continue
        if label not in query_set:
            if label not in vocabulary:
                label = ontology.nearest_in(label, vocabulary) or label
            if label not in query_set:
                label = ontology.nearest_in(label, query_set)
        if label is not None:
            assigned[label].append(reference)
    return assigned


def _prepare(
    corpus: Corpus,
    clip: Clip,
    references: dict[str, list[Reference]],
    vocabulary: Sequence[str],
    sampling_rate: int,
    absent_per_clip: int,
) -> tuple[_Prepared | None, list[Skip]]:
    """Load a clip and the targets of its queries; queries (or the clip) that cannot be scored are skipped."""

    def skip(reason: str) -> Skip:
        return Skip(clip.index, clip.clip_id, clip.where, reason)

    if clip.clip_id not in references:
        return None, [skip(f"no references in {REFERENCE_MANIFEST}")]
    vocabulary_set = set(vocabulary)
    selection = corpus.ontology.select_queries(clip.labels, vocabulary_set)
    if not selection.queries:
        return None, [skip(f"no label in the model's vocabulary (labels: {', '.join(clip.labels)})")]
    try:
        mixture = corpus.load(clip, sampling_rate)
    except AudioError as error:
        return None, [skip(f"mixture: {error}")]
    assigned = _assign_references(corpus, references[clip.clip_id], selection.queries, vocabulary_set)
    skips: list[Skip] = []
    queries: list[str] = []
    targets: list[np.ndarray] = []
    tolerance = int(LENGTH_TOLERANCE_SECONDS * sampling_rate)
    for query in selection.queries:
        name = corpus.ontology.name(query)
        if not assigned[query]:
            skips.append(skip(f"query {name} ({query}): no reference labelled with it or a class below it"))
            continue
        target = np.zeros_like(mixture)
        for reference in assigned[query]:
            try:
                waveform = load_audio(reference.path, sampling_rate)
            except AudioError as error:
                return None, [skip(f"reference {reference.label}: {error}")]
            if abs(waveform.shape[-1] - mixture.shape[-1]) > tolerance:
                return None, [
                    skip(
                        f"reference {reference.path}: {waveform.shape[-1] / sampling_rate:.2f} s long, "
                        f"the mixture {mixture.shape[-1] / sampling_rate:.2f} s"
                    )
                ]
            target += fit_length(waveform, mixture.shape[-1])
        if np.abs(target).max() < SILENCE_PEAK:
            skips.append(skip(f"query {name} ({query}): its reference is silent"))
            continue
        queries.append(query)
        targets.append(target)
    if not queries:
        return None, skips
    parents, children, parent_targets = parent_queries(corpus.ontology, queries, np.stack(targets), vocabulary_set)
    absent = absent_queries(corpus.ontology, clip.labels, vocabulary, absent_per_clip, seed=clip.index)
    return _Prepared(
        clip,
        mixture,
        queries + parents,
        np.concatenate([np.stack(targets), parent_targets]),
        [LABEL] * len(queries) + [PARENT] * len(parents),
        [None] * len(queries) + children,
        absent,
    ), skips


def _ideal_ratio_mask(model: ClearSepModel, mixture: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Oracle estimates ``istft(min(|S_q| / |X|, 1) * X)`` on the model's own STFT (``model.spectrogram``)."""
    spectrogram = model.spectrogram
    mixture_spec = spectrogram.stft(torch.from_numpy(mixture[None]).to(model.device))
    target_spec = spectrogram.stft(torch.from_numpy(targets).to(model.device))
    mask = (target_spec.abs() / mixture_spec.abs().clamp_min(1e-12)).clamp(max=1.0)
    return spectrogram.istft(mask * mixture_spec, mixture.shape[-1]).cpu().numpy()


def _score(
    model: ClearSepModel, prepared: _Prepared, estimates: np.ndarray, names: dict[str, str], oracle: bool
) -> list[ItemScore]:
    """One :class:`ItemScore` per query of a separated clip (metrics in float64)."""
    targets = torch.from_numpy(prepared.targets).double()
    estimates = torch.from_numpy(np.asarray(estimates)).double()
    columns = separation_scores(targets, estimates, torch.from_numpy(prepared.mixture).double())
    if oracle:
        masked = torch.from_numpy(_ideal_ratio_mask(model, prepared.mixture, prepared.targets)).double()
        columns["oracle_sdr"] = sdr(targets, masked)
        columns["oracle_si_sdr"] = si_sdr(targets, masked)
    return [
        ItemScore(
            clip_id=prepared.clip.clip_id,
            query=query,
            name=names[query],
            **{key: float(values[position]) for key, values in columns.items()},
            kind=prepared.kinds[position],
            child=prepared.children[position],
        )
        for position, query in enumerate(prepared.queries)
    ]


def _groups(entries: Sequence[Clip | Skip], size: int) -> Iterator[Sequence[Clip | Skip]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def evaluate_on_benchmark(
    model: ClearSepModel,
    benchmark: str | os.PathLike | Benchmark,
    *,
    split: str = "eval",
    batch_size: int = 16,
    max_clips: int | None = None,
    oracle: bool = True,
    use_bf16: bool = False,
    num_workers: int = 4,
    absent_per_clip: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Separate every query of every clip of a benchmark split and score it against its reference.

    ``benchmark`` is an AudioSet-style folder with ``{split}_segments.csv`` and
    ``references/manifest.csv`` (see the module docstring), or a :class:`Benchmark` already opened
    (then ``split`` is its own). The model runs on its own device.

    ``batch_size`` clips are loaded at a time (by ``num_workers`` threads, the next group while
    the model separates the current one) and separated in one batched :meth:`ClearSepModel.separate`
    call. ``progress(done, total)`` is called after each group. Clips that cannot be scored are
    listed in :attr:`EvaluationResult.skipped` with the reason, never raised. Every clip is also
    asked for the vocabulary classes above its queries and for ``absent_per_clip`` classes it does
    not hold (:mod:`clearsep_data.query_kinds`).
    """
    if not isinstance(benchmark, Benchmark):
        benchmark = Benchmark.open(benchmark, split)
    corpus, references = benchmark.corpus, benchmark.references
    entries = list(corpus)
    if max_clips is not None:
        entries = entries[:max_clips]
    config = model.config
    vocabulary = list(config.label_mids)
    names = {mid: config.id2label[index] for index, mid in enumerate(config.label_mids)}
    result = EvaluationResult(
        model=str(getattr(model, "name_or_path", "") or type(model).__name__),
        dataset=corpus.name,
        split=benchmark.split,
        sampling_rate=config.sampling_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
    )

    def prepare(entry: Clip | Skip) -> tuple[_Prepared | None, list[Skip]]:
        if isinstance(entry, Skip):
            return None, [entry]
        return _prepare(corpus, entry, references, vocabulary, config.sampling_rate, absent_per_clip)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        groups = _groups(entries, max(1, batch_size))
        pending: list[Future] = [pool.submit(prepare, entry) for entry in next(groups, [])]
        while pending:
            current, pending = pending, [pool.submit(prepare, entry) for entry in next(groups, [])]
            ready: list[_Prepared] = []
            for future in current:
                prepared, skips = future.result()
                result.skipped.extend(skips)
                if prepared is not None:
                    ready.append(prepared)
            if ready:
                try:
                    estimates = model.separate(
                        [item.mixture for item in ready],
                        [item.queries + item.absent for item in ready],
                        sampling_rate=config.sampling_rate,
                        batch_size=batch_size,
                        use_bf16=use_bf16,
                    )
                except ValueError as error:  # the model refused an input: skip its group, keep going
                    result.skipped.extend(
                        Skip(item.clip.index, item.clip.clip_id, item.clip.where, f"separation failed: {error}")
                        for item in ready
                    )
                    estimates = []
                for prepared, estimate in zip(ready, estimates):
                    asked = len(prepared.queries)
                    result.items.extend(_score(model, prepared, estimate[:asked], names, oracle))
                    result.absent.extend(
                        AbsentScore(prepared.clip.clip_id, query, names[query], float(level))
                        for query, level in zip(prepared.absent, level_db(estimate[asked:], prepared.mixture))
                    )
            done += len(current)
            if progress is not None:
                progress(done, len(entries))
    return result

