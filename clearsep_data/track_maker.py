"""One clip in, scored tracks out: query selection, separation, reference-free quality, thresholds.

A clip whose labels reduce to one query (the ontology's mutually exclusive reduction) is kept whole; a
multi-event clip is separated once per query, each track re-separated with every query of its clip for
the per-track checks (:mod:`clearsep_data.quality`), and judged by :class:`~clearsep_data.filtering.Thresholds`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from clearsep_data.audio import AudioError, encode_flac
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


class TrackMaker:
    """Turns one clip into track rows (accepted and rejected) or a :class:`Skip`."""

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
        self.separate_options = dict(sampling_rate=self.sampling_rate, batch_size=batch_size, use_bf16=use_bf16)
        self.thresholds_json = self.thresholds.to_json()

    def __call__(self, clip: Clip, corpus) -> tuple[list[dict], list[dict], Skip | None]:
        """``(accepted_rows, rejected_rows, skip)`` for one clip."""
        selection = self.ontology.select_queries(clip.labels, self.vocabulary)
        if selection.unknown:
            return [], [], self._skip(clip, f"labels not in the ontology: {', '.join(selection.unknown)}")
        if selection.out_of_vocabulary:
            names = ", ".join(f"{mid} ({self.ontology.name(mid)})" for mid in selection.out_of_vocabulary)
            return [], [], self._skip(clip, f"labels outside the model's query vocabulary: {names}")
        if not selection.queries:
            return [], [], self._skip(clip, "no labels to query")
        if len(selection.queries) > 1 and self.model is None:
            return [], [], self._skip(clip, "multi-event clip and no separation model given")
        try:
            mixture = corpus.load(clip, self.sampling_rate)
        except AudioError as error:
            return [], [], self._skip(clip, error.reason)
        if len(selection.queries) == 1:
            return [self._row(clip, selection.queries[0], mixture, origin=ORIGIN_SINGLE_SOURCE)], [], None
        return self._separate(clip, list(selection.queries), mixture)

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
            "audio": {"bytes": encode_flac(waveform, self.sampling_rate), "path": f"{identifier}.flac"},
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
