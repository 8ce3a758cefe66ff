"""Clips in, scored tracks out: query selection, separation, reference-free quality, thresholds.

A clip whose labels reduce to one query (the ontology's mutually exclusive reduction) is kept whole; a
multi-event clip is separated once per query, each track re-separated with every query of its clip for
the per-track checks (:mod:`clearsep_data.quality`), and judged by :class:`~clearsep_data.filtering.Thresholds`.

Several clips go through one ``separate`` call (``clips_per_batch``), and their tracks through one re-separation;
the outputs stay on the model's device until they are scored. A clip longer than ``window_chunks`` of the model's
chunks is processed window by window, in bounded memory (and glibc's heap is kept from growing with it,
:mod:`clearsep_data.heap`): each window is separated with twice the model's chunk
context on each side and its tracks (with one context) re-separated, so that the window equals that part of the
whole clip's separation up to float rounding; its quality sums are added (:class:`~clearsep_data.quality.QualitySums`)
and its tracks FLAC-encoded (:class:`~clearsep_data.audio.FlacStream`) before the next window.

The work is cut in two so that the CPU side runs beside the model: :meth:`TrackMaker.prepare` chooses the queries
and decodes the clip (in DataLoader workers, :mod:`clearsep_data.clip_stream`), :meth:`TrackMaker.make` separates
and scores it (the main process), and :mod:`clearsep_data.block_writer` turns the rows' waveforms into FLAC when
their block is written.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from clearsep_data.audio import AudioError, FlacStream
from clearsep_data.corpus import Clip, Skip
from clearsep_data.filtering import Thresholds
from clearsep_data.heap import map_large_blocks
from clearsep_data.ontology import Ontology
from clearsep_data.quality import QualitySums, with_prediction
from clearsep_data.quality_predictor import QualityPredictor
from clearsep_data.tracks import ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE, track_id


def load_model(model_id: str | None, device):
    """A ``ClearSepModel`` (local folder or Hub id) in eval mode on ``device``, and its provenance tag.

    ``from_pretrained`` returns weights in memory of their own (not the memory-mapped file), so the model computes
    the same whether ``.to(device)`` copies it (an accelerator) or not (the CPU). A folder that cannot be loaded
    raises ``ClearSepLoadError`` (a ``ValueError``) naming the file and the fault.
    """
    if model_id is None:
        return None, ""
    from clearsep_data.modeling import ClearSepModel

    model = ClearSepModel.from_pretrained(model_id).to(device).eval()
    return model, model_tag(model_id, model)


MODEL_FILES = ("config.json", "model.safetensors")
"""What a local model folder's content hash covers: the config (label order, STFT, architecture) and the weights."""


def model_tag(model_id: str, model) -> str:
    """``{id}@{revision}``: the Hub commit for Hub models, a content hash of config and weights for local folders."""
    revision = getattr(model.config, "_commit_hash", None)
    folder = Path(model_id)
    if folder.is_dir():
        digest = hashlib.sha256(b"".join(_file_sha256(folder / name) for name in MODEL_FILES))
        revision = "sha256:" + digest.hexdigest()[:16]
    return f"{model_id}@{revision or 'unknown'}"


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.digest()


@dataclass
class Prepared:
    """A corpus row ready for the model: its queries and decoded audio, or why it is skipped."""

    item: Clip | Skip
    queries: tuple[str, ...] = ()
    mixture: np.ndarray | None = None
    skip: Skip | None = None


Made = tuple[list[dict], list[dict], Skip | None]
"""What a clip becomes: ``(accepted_rows, rejected_rows, skip)``."""

WINDOW_CHUNKS = 8
"""A clip longer than this many of the model's inference chunks is separated, scored and encoded window by window."""


@dataclass
class _Separation:
    """A multi-event clip on its way through the model: its windows ``(start, end)``, sums and tracks so far."""

    index: int
    prepared: Prepared
    windows: list[tuple[int, int]]
    sums: QualitySums = field(default_factory=QualitySums)
    tracks: list = field(default_factory=list)
    """Per query: the waveform (one window) or its :class:`FlacStream` (several)."""
    not_finite: list[str] = field(default_factory=list)


class TrackMaker:
    """Turns clips into track rows (accepted and rejected) or :class:`Skip` rows.

    Rows hold their audio as a waveform (``{"array", "path"}``) until :func:`encode_audio`, or as FLAC bytes
    (``{"bytes", "path"}``) when their clip was separated window by window.
    """

    def __init__(
        self,
        ontology: Ontology,
        model=None,
        model_tag: str = "",
        *,
        thresholds: Thresholds | None = None,
        iteration: int = 0,
        sampling_rate: int = 16000,
        batch_size: int = 8,
        use_bf16: bool = False,
        clips_per_batch: int = 1,
        window_chunks: int = WINDOW_CHUNKS,
    ):
        """``sampling_rate`` is the tracks' rate when there is no model (otherwise the model's rate)."""
        self.ontology = ontology
        self.model = model
        self.model_tag = model_tag
        self.thresholds = thresholds or Thresholds()
        self.iteration = iteration
        self.vocabulary = list(model.config.label_mids) if model is not None else None
        self.sampling_rate = model.config.sampling_rate if model is not None else sampling_rate
        # The clip's labels say its sounds are present: tracks and their scores come from the masks, ungated.
        self.separate_options = dict(
            sampling_rate=self.sampling_rate, batch_size=batch_size, use_bf16=use_bf16, presence_gate="none",
            return_tensors="pt",
        )
        self.thresholds_json = self.thresholds.to_json()
        self.clips_per_batch = clips_per_batch
        self.predictor = QualityPredictor.load() if model is not None else None
        if model is not None:
            extractor = model.feature_extractor
            self.window, self.context = window_chunks * extractor.chunk_length, extractor.chunk_context

    def __call__(self, clip: Clip, corpus) -> Made:
        """``(accepted_rows, rejected_rows, skip)`` for one clip."""
        return self.make([self.prepare(clip, corpus)])[0]

    def prepare(self, item: Clip | Skip, corpus) -> Prepared:
        """Choose the clip's queries and decode its audio (no model involved)."""
        if isinstance(item, Skip):
            return Prepared(item, skip=item)
        selection = self.ontology.select_queries(item.labels, self.vocabulary)
        if selection.unknown:
            return Prepared(item, skip=self._skip(item, f"labels not in the ontology: {', '.join(selection.unknown)}"))
        if selection.out_of_vocabulary:
            names = ", ".join(f"{mid} ({self.ontology.name(mid)})" for mid in selection.out_of_vocabulary)
            return Prepared(item, skip=self._skip(item, f"labels outside the model's query vocabulary: {names}"))
        if not selection.queries:
            return Prepared(item, skip=self._skip(item, "no labels to query"))
        if len(selection.queries) > 1 and self.model is None:
            return Prepared(item, skip=self._skip(item, "multi-event clip and no separation model given"))
        try:
            mixture = corpus.load(item, self.sampling_rate)
        except AudioError as error:
            return Prepared(item, skip=self._skip(item, error.reason))
        return Prepared(item, tuple(selection.queries), mixture)

    def make(self, batch: list[Prepared]) -> list[Made]:
        """What each prepared row becomes, in order: kept whole, or separated and judged (``clips_per_batch`` clips
        per model call)."""
        made: list[Made | None] = [None] * len(batch)
        separations = []
        for index, prepared in enumerate(batch):
            if prepared.skip is not None:
                made[index] = ([], [], prepared.skip)
            elif len(prepared.queries) == 1:
                made[index] = ([self._row(prepared.item, prepared.queries[0], prepared.mixture, origin=ORIGIN_SINGLE_SOURCE)], [], None)
            else:
                windows = self._windows(len(prepared.mixture))
                if len(windows) > 1:
                    map_large_blocks()  # each window's activations go back to the system, not to a growing heap
                separations.append(_Separation(index, prepared, windows))
        for group in self._groups(separations):
            self._separate(group)
        for separation in separations:
            made[separation.index] = self._judge(separation)
        return made

    def _windows(self, length: int) -> list[tuple[int, int]]:
        return [(start, min(start + self.window, length)) for start in range(0, length, self.window)]

    def _groups(self, separations: list[_Separation]) -> Iterator[list[tuple[_Separation, tuple[int, int]]]]:
        """Model calls: up to ``clips_per_batch`` one-window clips each, or one window of a longer clip."""
        group = []
        for separation in separations:
            if len(separation.windows) > 1:
                yield from ([(separation, window)] for window in separation.windows)
                continue
            group.append((separation, separation.windows[0]))
            if len(group) == self.clips_per_batch:
                yield group
                group = []
        if group:
            yield group

    def _separate(self, group: list[tuple[_Separation, tuple[int, int]]]) -> None:
        """Separate, re-separate and score one window of each clip of ``group``; keep its tracks."""
        group = [(separation, window) for separation, window in group if not separation.not_finite]
        if not group:
            return
        spans = [self._spans(len(separation.prepared.mixture), *window) for separation, window in group]
        outputs = self.model.separate(
            [separation.prepared.mixture[lo:hi] for (separation, _), ((lo, hi), _) in zip(group, spans)],
            [list(separation.prepared.queries) for separation, _ in group], **self.separate_options)
        tracks, ready = [], []
        for (separation, window), ((lo, _), (start, end)), output in zip(group, spans, outputs):
            output = output[:, start - lo : end - lo]  # the tracks over the window and its context
            separation.not_finite = [query for query, track in zip(separation.prepared.queries, output) if not torch.isfinite(track).all()]
            if not separation.not_finite:
                tracks.append(output)
                ready.append((separation, window, start))
        if not ready:
            return
        reseparated = iter(self.model.separate(
            [track for output in tracks for track in output],
            [list(separation.prepared.queries) for separation, _, _ in ready for _ in separation.prepared.queries],
            **self.separate_options))
        for (separation, (first, last), start), output in zip(ready, tracks):
            queries = len(output)
            window = slice(first - start, last - start)
            again = torch.stack([next(reseparated)[:, window] for _ in range(queries)])
            mixture = torch.from_numpy(separation.prepared.mixture[first:last]).to(output.device)
            separation.sums.add(mixture, output[:, window], again)
            self._keep(separation, output[:, window].cpu().numpy())

    def _spans(self, length: int, first: int, last: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The mixture to separate and the tracks to re-separate for the window ``[first, last)`` of a clip: the window
        with two and one chunk contexts on each side (within the clip)."""
        context = self.context if last - first < length else 0
        return ((max(0, first - 2 * context), min(length, last + 2 * context)),
                (max(0, first - context), min(length, last + context)))

    def _keep(self, separation: _Separation, window_tracks: np.ndarray) -> None:
        if len(separation.windows) == 1:
            separation.tracks = list(window_tracks)
            return
        if not separation.tracks:
            separation.tracks = [FlacStream(self.sampling_rate) for _ in window_tracks]
        for stream, track in zip(separation.tracks, window_tracks):
            stream.write(track)

    def _judge(self, separation: _Separation) -> Made:
        clip, queries = separation.prepared.item, separation.prepared.queries
        if separation.not_finite:
            return [], [], self._skip(clip, f"model output is not finite (NaN/inf) for {', '.join(separation.not_finite)}")
        scores = with_prediction(separation.sums.scores(), self.predictor)
        if not (math.isfinite(scores[0].re_sdr) and math.isfinite(scores[0].re_sisdr)):
            return [], [], self._skip(clip, "remix scores are not finite")
        accepted, rejected = [], []
        audio = [track.finish() if isinstance(track, FlacStream) else track for track in separation.tracks]
        for query, track, track_scores, reason in zip(queries, audio, scores, self.thresholds.judge(scores)):
            row = self._row(clip, query, track, origin=ORIGIN_SEPARATED, reject_reason=reason, **asdict(track_scores))
            (rejected if reason else accepted).append(row)
        return accepted, rejected, None

    def _row(self, clip: Clip, label: str, audio: np.ndarray | bytes, origin: str, reject_reason: str = "", **scores) -> dict:
        """A track row; ``audio`` is its waveform or, from a clip separated window by window, its FLAC bytes."""
        identifier = track_id(clip.clip_id, clip.start_seconds, label)
        return {
            "audio": {"bytes" if isinstance(audio, bytes) else "array": audio, "path": f"{identifier}.flac"},
            "track_id": identifier,
            "clip_id": clip.clip_id,
            "start_seconds": clip.start_seconds,
            "end_seconds": clip.end_seconds,
            "label": label,
            "label_name": self.ontology.name(label),
            "clip_labels": list(clip.labels),
            "clip_label_names": [self.ontology.name(mid) for mid in clip.labels],
            "origin": origin,
            "re_sdr": scores.get("re_sdr"),
            "re_sisdr": scores.get("re_sisdr"),
            "energy_ratio": scores.get("energy_ratio", 0.0),
            "consistency_sisdr": scores.get("consistency_sisdr"),
            "leakage_db": scores.get("leakage_db"),
            "predicted_si_sdr": scores.get("predicted_si_sdr"),
            "iteration": self.iteration,
            "model": self.model_tag if origin == ORIGIN_SEPARATED else "",
            "thresholds": self.thresholds_json,
            "reject_reason": reject_reason,
        }

    @staticmethod
    def _skip(clip: Clip, reason: str) -> Skip:
        return Skip(index=clip.index, clip_id=clip.clip_id, where=clip.where, reason=reason)
