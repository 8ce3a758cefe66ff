"""Signal-level metrics: SDR and SI-SDR (in dB), on torch tensors over the last axis.

These serve three places with one definition: the training loss, the engine's reference-free
remix scores (Re-SDR, Re-SI-SDR) and evaluation against references (SDR, SI-SDR, and their
improvements over the mixture). They are defined with the loss, in
``clearsep_data.modeling.losses`` (the model package imports nothing else of ClearSep), and
re-exported here for the data side.
"""

from __future__ import annotations

import torch

from clearsep_data.modeling.losses import EPS, energy_db, sdr, si_sdr


def separation_scores(targets: torch.Tensor, estimates: torch.Tensor, mixture: torch.Tensor) -> dict[str, torch.Tensor]:
    """SDR and SI-SDR (dB) of each estimate and of the unprocessed mixture against its target.

    ``targets`` and ``estimates`` are ``(..., Q, T)``, ``mixture`` ``(..., T)`` (the input every query was separated
    from); each value is ``(..., Q)``. The improvements (SDRi, SI-SDRi) are ``sdr - mixture_sdr`` and
    ``si_sdr - mixture_si_sdr``: the one definition behind training's evaluation and :mod:`clearsep_data.evaluation`.
    """
    unprocessed = mixture.unsqueeze(-2).expand_as(targets)
    return {
        "sdr": sdr(targets, estimates),
        "si_sdr": si_sdr(targets, estimates),
        "mixture_sdr": sdr(targets, unprocessed),
        "mixture_si_sdr": si_sdr(targets, unprocessed),
    }


__all__ = ["EPS", "energy_db", "sdr", "separation_scores", "si_sdr"]
