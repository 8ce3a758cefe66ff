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
class TrackQuality:
    """Quality scores of one clip's tracks (per-track tensors have one entry per query)."""

    re_sdr: float
    re_sisdr: float
    energy_ratio: torch.Tensor
    consistency_sisdr: torch.Tensor
    leakage_db: torch.Tensor


def assess(mixture: torch.Tensor, tracks: torch.Tensor, reseparated: torch.Tensor) -> TrackQuality:
    """Score ``tracks`` (Q, T) separated from ``mixture`` (T,).

    ``reseparated`` (Q, Q, T) holds track ``i`` re-separated with query ``j`` at ``[i, j]``.
    """
    remix = tracks.sum(0)
    queries = tracks.shape[0]
    own = reseparated.diagonal(dim1=0, dim2=1).movedim(-1, 0)  # (Q, T)
    others = ~torch.eye(queries, dtype=torch.bool)
    leakage = energy_db(reseparated, tracks.unsqueeze(1).expand_as(reseparated))  # (Q, Q)
    leakage = leakage.masked_fill(~others, float("-inf")).amax(dim=1)
    return TrackQuality(
        re_sdr=float(sdr(mixture, remix)),
        re_sisdr=float(si_sdr(mixture, remix)),
        energy_ratio=energy_db(tracks, mixture.expand_as(tracks)),
        consistency_sisdr=si_sdr(tracks, own),
        leakage_db=leakage,
    )
