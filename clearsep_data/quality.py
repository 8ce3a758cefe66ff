"""Reference-free quality of a clip's separated tracks.

With no ground truth, a clip's tracks are judged by how well they *remix* into the clip
(Re-SDR, Re-SI-SDR). Remix scores alone are fooled by a degenerate separation in which one track
takes the whole clip and the others stay silent, so each track also gets:

- ``energy_ratio``: its energy relative to the clip (a silent track scores very low);
- ``consistency_sisdr``: re-separating the track with its own query should return it unchanged
  (a track that swallowed other events loses them on re-separation);
- ``leakage_db``: re-separating the track with the clip's *other* queries should yield near-silence
  (a track that swallowed other events gives them back);
- ``predicted_si_sdr``: the SI-SDR a learned predictor (:mod:`clearsep_data.quality_predictor`) expects the track
  to have against its reference, from the fields above; it ranks tracks by their true quality better than any one
  of them (``benchmarks/README.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from clearsep_data.metrics import EPS
from clearsep_data.quality_predictor import FEATURES, QualityPredictor


@dataclass(frozen=True)
class TrackScores:
    """The quality fields of one separated track (``re_sdr`` and ``re_sisdr`` are its clip's, shared by its tracks)."""

    re_sdr: float
    re_sisdr: float
    energy_ratio: float
    consistency_sisdr: float
    leakage_db: float
    predicted_si_sdr: float | None = None


PIECE = 2**18
"""Samples summed at a time by :meth:`QualitySums.add`."""


class QualitySums:
    """The running sums behind a clip's :class:`TrackScores`, added window by window on the tensors' device.

    A long clip is scored in bounded memory: each window of its mixture, tracks and re-separations adds its sums
    (in float64) and is dropped. The scores are those of :func:`clearsep_data.metrics.sdr`, ``si_sdr`` and
    ``energy_db`` over the whole clip (the zero-mean projection of SI-SDR is done on the sums), whatever the windows.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.samples = 0

    def add(self, mixture: torch.Tensor, tracks: torch.Tensor, reseparated: torch.Tensor) -> None:
        """One window: ``mixture`` (T,), ``tracks`` (Q, T), ``reseparated`` (Q, Q, T), track ``i`` with query ``j`` at ``[i, j]``.

        Summed in pieces of :data:`PIECE` samples, so that the float64 copies stay small.
        """
        for start in range(0, mixture.shape[-1], PIECE):
            piece = slice(start, start + PIECE)
            self._add(mixture[piece].double(), tracks[:, piece].double(), reseparated[:, :, piece].double())

    def _add(self, mixture: torch.Tensor, tracks: torch.Tensor, reseparated: torch.Tensor) -> None:
        remix = tracks.sum(0)
        own = reseparated.diagonal(dim1=0, dim2=1).movedim(-1, 0)  # (Q, T)
        window = {
            "mixture": mixture.sum(-1), "mixture_energy": mixture.square().sum(-1),
            "remix": remix.sum(-1), "remix_energy": remix.square().sum(-1), "mixture_remix": (mixture * remix).sum(-1),
            "remix_error": (mixture - remix).square().sum(-1),
            "tracks": tracks.sum(-1), "track_energy": tracks.square().sum(-1),
            "own": own.sum(-1), "own_energy": own.square().sum(-1), "track_own": (tracks * own).sum(-1),
            "reseparated_energy": reseparated.square().sum(-1),
        }
        self.sums = {key: self.sums[key] + value if self.sums else value for key, value in window.items()}
        self.samples += mixture.shape[-1]

    def scores(self) -> list[TrackScores]:
        """One record per track, in query order."""
        s = self.sums
        re_sdr = _ratio_db(s["mixture_energy"], s["remix_error"])
        re_sisdr = self._si_sdr(s["mixture"], s["mixture_energy"], s["remix"], s["remix_energy"], s["mixture_remix"])
        energy = _ratio_db(s["track_energy"], s["mixture_energy"])
        consistency = self._si_sdr(s["tracks"], s["track_energy"], s["own"], s["own_energy"], s["track_own"])
        leakage = _ratio_db(s["reseparated_energy"], s["track_energy"].unsqueeze(1))  # (Q, Q)
        others = ~torch.eye(leakage.shape[0], dtype=torch.bool, device=leakage.device)
        leakage = leakage.masked_fill(~others, float("-inf")).amax(dim=1)
        per_track = torch.stack([energy, consistency, leakage]).tolist()
        return [TrackScores(float(re_sdr), float(re_sisdr), *values) for values in zip(*per_track)]

    def _si_sdr(self, reference, reference_energy, estimate, estimate_energy, product) -> torch.Tensor:
        """SI-SDR from sums: both signals centred, the estimate projected on the reference."""
        n = self.samples
        reference_energy = reference_energy - reference * reference / n
        estimate_energy = estimate_energy - estimate * estimate / n
        product = product - reference * estimate / n
        scale = product / (reference_energy + EPS)
        target = scale.square() * reference_energy
        error = (estimate_energy - 2 * scale * product + target).clamp_min(0)
        return _ratio_db(target, error)


def _ratio_db(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10((numerator + EPS) / (denominator + EPS))


def assess(
    mixture: torch.Tensor, tracks: torch.Tensor, reseparated: torch.Tensor, predictor: QualityPredictor | None = None
) -> list[TrackScores]:
    """Score ``tracks`` (Q, T) separated from ``mixture`` (T,): one record per track, in query order.

    ``reseparated`` (Q, Q, T) holds track ``i`` re-separated with query ``j`` at ``[i, j]``; with a ``predictor``,
    each record also holds its ``predicted_si_sdr``.
    """
    sums = QualitySums()
    sums.add(mixture, tracks, reseparated)
    return with_prediction(sums.scores(), predictor)


def with_prediction(scores: list[TrackScores], predictor: QualityPredictor | None) -> list[TrackScores]:
    """A clip's scores with each track's ``predicted_si_sdr`` (unchanged without a ``predictor``)."""
    if predictor is None:
        return scores
    predicted = predictor.predict_table({name: [getattr(track, name) for track in scores] for name in FEATURES})
    return [replace(track, predicted_si_sdr=float(value)) for track, value in zip(scores, predicted)]
