"""Training objectives of the separator, per (clip, query) item and their weighted mean, and the signal metrics they
are made of.

``"snr_sisnr"`` is the objective of the paper's released code (a CLAPSep fork): ``-0.9 SNR - 0.1 SI-SNR`` on
waveforms. SNR is undefined for a silent target, which is what absent-query augmentation produces (ask for a sound
that is not in the mixture, expect silence); such items instead penalise the energy of the estimate relative to the
mixture, in dB, which has the same order of magnitude as the SNR terms. ``"l1"`` is AudioSep's waveform L1, which
handles silent targets by itself. :data:`LOSSES` maps these names (``config.loss``) to their item losses.

The signal metrics, SDR and SI-SDR (in dB, on torch tensors over the last axis), serve three places with one
definition: this loss, the engine's reference-free remix scores (Re-SDR, Re-SI-SDR) and evaluation against references
(SDR, SI-SDR, and their improvements over the mixture); ``clearsep_data.metrics`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

EPS = 1e-8
SILENCE_RATIO = 1e-8
"""A target whose energy is below this fraction of the mixture's counts as silent."""
SILENCE_FLOOR = 1e-4
"""Floor of the silent-target penalty: an estimate 40 dB below the mixture is silent enough."""
SNR_WEIGHT = 0.9
SI_SNR_WEIGHT = 0.1


# --------------------------------------------------------------------------------------------
# Signal metrics
# --------------------------------------------------------------------------------------------


def at_least_float32(*signals: torch.Tensor) -> tuple[torch.Tensor, ...]:
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
    reference, estimate = at_least_float32(reference, estimate)
    noise = reference - estimate
    return 10 * torch.log10((reference.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al., 2019), both signals made zero-mean first."""
    reference, estimate = at_least_float32(reference, estimate)
    reference = reference - reference.mean(-1, keepdim=True)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * reference
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / ((estimate - target).pow(2).sum(-1) + eps))


def energy_db(signal: torch.Tensor, reference: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Energy of ``signal`` relative to ``reference`` in dB."""
    signal, reference = at_least_float32(signal, reference)
    return 10 * torch.log10((signal.pow(2).sum(-1) + eps) / (reference.pow(2).sum(-1) + eps))


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def silent_target_penalty(estimate: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``10 log10(|est|^2 / |mix|^2 + 1e-4)``: from about 0 dB (the mixture passed through) down to -40 dB."""
    ratio = estimate.pow(2).sum(-1) / (mixture.pow(2).sum(-1) + EPS)
    return 10 * torch.log10(ratio + SILENCE_FLOOR)


def snr_sisnr_loss(estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``-0.9 SNR - 0.1 SI-SNR`` per item; :func:`silent_target_penalty` for silent targets.

    ``(B, Q, T)`` float32 estimates and targets, ``(B, 1, T)`` mixtures -> ``(B, Q)``.
    """
    audible = -(SNR_WEIGHT * sdr(target, estimate) + SI_SNR_WEIGHT * si_sdr(target, estimate))
    silent = silent_targets(target, mixture[:, 0])
    return torch.where(silent, silent_target_penalty(estimate, mixture), audible)


def l1_loss(estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """Mean absolute waveform error per item (AudioSep); the mixture is not used."""
    return (estimate - target).abs().mean(-1)


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "snr_sisnr": snr_sisnr_loss,
    "l1": l1_loss,
}
"""The training objectives by name (``ClearSepConfig.loss``): (estimate, target, mixture) -> item losses."""
DEFAULT_LOSS = "snr_sisnr"


def item_losses(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor, kind: str = DEFAULT_LOSS
) -> torch.Tensor:
    """The loss of every (clip, query) item: ``(B, Q, T)`` estimates and targets, ``(B, T)`` mixtures -> ``(B, Q)``."""
    if estimate.shape != target.shape or estimate.ndim != 3:
        raise ValueError(
            f"estimate and target must both be (batch, queries, samples); got {tuple(estimate.shape)} "
            f"and {tuple(target.shape)}"
        )
    if mixture.shape != (estimate.shape[0], estimate.shape[-1]):
        raise ValueError(
            f"mixture must be (batch, samples) = {(estimate.shape[0], estimate.shape[-1])}, got {tuple(mixture.shape)}"
        )
    if kind not in LOSSES:
        raise ValueError(f"unknown loss kind {kind!r}; use {' or '.join(repr(name) for name in LOSSES)}")
    estimate, target, mixture = estimate.float(), target.float(), mixture.float()[:, None, :]
    return LOSSES[kind](estimate, target, mixture)


def silent_targets(target: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``(B, Q)`` booleans: which of ``(B, Q, T)`` targets are silent (absent-class queries) for ``(B, T)`` mixtures."""
    target, mixture = at_least_float32(target, mixture)
    return target.pow(2).sum(-1) < SILENCE_RATIO * mixture.pow(2).sum(-1, keepdim=True)


def presence_loss(logits: torch.Tensor, present: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Class-balanced binary cross-entropy of presence logits ``(B, Q)`` against ``present`` ``(B, Q)`` booleans: the
    mean over present items plus the mean over absent ones, so that rare absent-class queries weigh as much as the
    others (items of weight 0, padding, are left out)."""
    weights = torch.ones_like(logits) if weights is None else (weights > 0).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits.float(), present.float(), reduction="none")
    total = logits.new_zeros(())
    for group in (present, ~present):
        mask = weights * group
        total = total + (losses * mask).sum() / mask.sum().clamp_min(1.0)
    return total


def separation_loss(
    estimate: torch.Tensor,
    target: torch.Tensor,
    mixture: torch.Tensor,
    kind: str = DEFAULT_LOSS,
    weights: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean over (clip, query) items of :func:`item_losses`.

    Args:
        estimate: separated waveforms ``(B, Q, T)``.
        target: reference waveforms ``(B, Q, T)``; all-zero for queries absent from the mixture.
        mixture: the input mixtures ``(B, T)``.
        kind: a name of :data:`LOSSES`: ``"snr_sisnr"`` (default) or ``"l1"``.
        weights: ``(B, Q)`` per-item weights (e.g. a track's confidence); ``None`` weighs items equally.
        query_mask: ``(B, Q)`` booleans, ``False`` for padding queries (same as a weight of 0).
    """
    losses = item_losses(estimate, target, mixture, kind)
    weights = torch.ones_like(losses) if weights is None else weights.to(losses.dtype)
    if weights.shape != losses.shape:
        raise ValueError(f"weights must be (batch, queries) = {tuple(losses.shape)}, got {tuple(weights.shape)}")
    if query_mask is not None:
        weights = weights * query_mask.to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(EPS)


__all__ = [
    "DEFAULT_LOSS", "EPS", "LOSSES", "energy_db", "item_losses", "presence_loss", "sdr", "separation_loss", "si_sdr",
    "silent_targets",
]  # fmt: skip
