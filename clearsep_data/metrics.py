"""Signal-level metrics: SDR and SI-SDR (in dB), on torch tensors over the last axis.

These serve three places with one definition: the training loss, the engine's reference-free
remix scores (Re-SDR, Re-SI-SDR) and evaluation against references (SDR, SI-SDR, and their
improvements over the mixture).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def _at_least_float32(*signals: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cast to a common float dtype of at least float32 precision.

    Sums of squares over 10 s of audio overflow float16 (max 65504) and lose about 0.1 dB in
    bfloat16, so half-precision (and integer PCM) inputs are computed in float32.
    """
    dtype = torch.float32
    for signal in signals:
        dtype = torch.promote_types(dtype, signal.dtype)
    return tuple(signal.to(dtype) for signal in signals)


def sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Signal-to-distortion ratio ``10 log10(|s|^2 / |s - s_hat|^2)`` (plain SNR, no projection)."""
    reference, estimate = _at_least_float32(reference, estimate)
    noise = reference - estimate
    return 10 * torch.log10((reference.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al., 2019), both signals made zero-mean first."""
    reference, estimate = _at_least_float32(reference, estimate)
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / ((estimate - target).pow(2).sum(-1) + eps))


def energy_db(signal: torch.Tensor, reference: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Energy of ``signal`` relative to ``reference`` in dB."""
    signal, reference = _at_least_float32(signal, reference)
    return 10 * torch.log10((signal.pow(2).sum(-1) + eps) / (reference.pow(2).sum(-1) + eps))
