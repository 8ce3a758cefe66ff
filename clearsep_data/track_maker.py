"""One clip in, scored tracks out: query selection, separation, reference-free quality, thresholds.

A clip whose labels reduce to one query (the ontology's mutually exclusive reduction) is kept whole; a
multi-event clip is separated once per query, each track re-separated with every query of its clip for
the per-track checks (:mod:`clearsep_data.quality`), and judged by :class:`~clearsep_data.filtering.Thresholds`.

The work is cut in two so that the CPU side runs beside the model: :meth:`TrackMaker.prepare` chooses the queries
and decodes the clip (in DataLoader workers, :mod:`clearsep_data.clip_stream`), :meth:`TrackMaker.make` separates
and scores it (the main process), and :mod:`clearsep_data.block_writer` turns the rows' waveforms into FLAC when
their block is written.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from clearsep_data.audio import AudioError
from clearsep_data.corpus import Clip, Skip
from clearsep_data.filtering import Thresholds
from clearsep_data.ontology import Ontology
from clearsep_data.quality import assess
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


class TrackMaker:
    """Turns one clip into track rows (accepted and rejected) or a :class:`Skip`.

    Rows hold their audio as a waveform (``{"array", "path"}``) until :func:`encode_audio`.
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
            sampling_rate=self.sampling_rate, batch_size=batch_size, use_bf16=use_bf16, presence_gate="none"
        )
        self.thresholds_json = self.thresholds.to_json()

    def __call__(self, clip: Clip, corpus) -> tuple[list[dict], list[dict], Skip | None]:
        """``(accepted_rows, rejected_rows, skip)`` for one clip."""
        return self.make(self.prepare(clip, corpus))

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

    def make(self, prepared: Prepared) -> tuple[list[dict], list[dict], Skip | None]:
        """``(accepted_rows, rejected_rows, skip)`` of a prepared row: kept whole, or separated and judged."""
        if prepared.skip is not None:
            return [], [], prepared.skip
        clip, queries = prepared.item, prepared.queries
        if len(queries) == 1:
            return [self._row(clip, queries[0], prepared.mixture, origin=ORIGIN_SINGLE_SOURCE)], [], None
        return self._separate(clip, list(queries), prepared.mixture)

    def _separate(self, clip: Clip, queries: list[str], mixture: np.ndarray):
        tracks = self.model.separate(mixture, queries, **self.separate_options)
        bad = [query for query, track in zip(queries, tracks) if not np.isfinite(track).all()]
        if bad:
            return [], [], self._skip(clip, f"model output is not finite (NaN/inf) for {', '.join(bad)}")
        reseparated = np.stack(self.model.separate(list(tracks), [queries] * len(queries), **self.separate_options))
        scores = assess(torch.from_numpy(mixture), torch.from_numpy(tracks), torch.from_numpy(reseparated))
        if not (math.isfinite(scores[0].re_sdr) and math.isfinite(scores[0].re_sisdr)):
            return [], [], self._skip(clip, "remix scores are not finite")
        accepted, rejected = [], []
        for query, track, track_scores, reason in zip(queries, tracks, scores, self.thresholds.judge(scores)):
            row = self._row(clip, query, track, origin=ORIGIN_SEPARATED, reject_reason=reason, **asdict(track_scores))
            (rejected if reason else accepted).append(row)
        return accepted, rejected, None

    def _row(self, clip: Clip, label: str, waveform: np.ndarray, origin: str, reject_reason: str = "", **scores) -> dict:
        identifier = track_id(clip.clip_id, clip.start_seconds, label)
        return {
            "audio": {"array": waveform, "path": f"{identifier}.flac"},
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
            "iteration": self.iteration,
            "model": self.model_tag if origin == ORIGIN_SEPARATED else "",
            "thresholds": self.thresholds_json,
            "reject_reason": reject_reason,
        }

    @staticmethod
    def _skip(clip: Clip, reason: str) -> Skip:
        return Skip(index=clip.index, clip_id=clip.clip_id, where=clip.where, reason=reason)
