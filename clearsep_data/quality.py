"""Reference-free quality of a clip's separated tracks.

With no ground truth, a clip's tracks are judged by how well they *remix* into the clip
(Re-SDR, Re-SI-SDR). Remix scores alone are fooled by a degenerate separation in which one track
takes the whole clip and the others stay silent, so each track also gets:

- ``energy_ratio``: its energy relative to the clip (a silent track scores very low);
- ``consistency_sisdr``: re-separating the track with its own query should return it unchanged
  (a track that swallowed other events loses them on re-separation);
- ``leakage_db``: re-separating the track with the clip's *other* queries should yield near-silence
  (a track that swallowed other events gives them back).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clearsep_data.metrics import energy_db, sdr, si_sdr


@dataclass(frozen=True)
class TrackScores:
    """The quality fields of one separated track (``re_sdr`` and ``re_sisdr`` are its clip's, shared by its tracks)."""

    re_sdr: float
    re_sisdr: float
    energy_ratio: float
    consistency_sisdr: float
    leakage_db: float


def assess(mixture: torch.Tensor, tracks: torch.Tensor, reseparated: torch.Tensor) -> list[TrackScores]:
    """Score ``tracks`` (Q, T) separated from ``mixture`` (T,): one record per track, in query order.

    ``reseparated`` (Q, Q, T) holds track ``i`` re-separated with query ``j`` at ``[i, j]``.
    """
    remix = tracks.sum(0)
    queries = tracks.shape[0]
    own = reseparated.diagonal(dim1=0, dim2=1).movedim(-1, 0)  # (Q, T)
    others = ~torch.eye(queries, dtype=torch.bool)
    leakage = energy_db(reseparated, tracks.unsqueeze(1).expand_as(reseparated))  # (Q, Q)
    leakage = leakage.masked_fill(~others, float("-inf")).amax(dim=1)
    re_sdr, re_sisdr = float(sdr(mixture, remix)), float(si_sdr(mixture, remix))
    energy = energy_db(tracks, mixture.expand_as(tracks))
    consistency = si_sdr(tracks, own)
    return [
        TrackScores(re_sdr, re_sisdr, float(energy[index]), float(consistency[index]), float(leakage[index]))
        for index in range(queries)
    ]
