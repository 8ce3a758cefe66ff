"""Signal-level metrics: SDR and SI-SDR (in dB), on torch tensors over the last axis.

These serve three places with one definition: the training loss, the engine's reference-free
remix scores (Re-SDR, Re-SI-SDR) and evaluation against references (SDR, SI-SDR, and their
improvements over the mixture).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Signal-to-distortion ratio ``10 log10(|s|^2 / |s - s_hat|^2)`` (plain SNR, no projection)."""
    noise = reference - estimate
    return 10 * torch.log10((reference.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al., 2019), both signals made zero-mean first."""
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / ((estimate - target).pow(2).sum(-1) + eps))


def energy_db(signal: torch.Tensor, reference: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Energy of ``signal`` relative to ``reference`` in dB."""
    return 10 * torch.log10((signal.pow(2).sum(-1) + eps) / (reference.pow(2).sum(-1) + eps))
