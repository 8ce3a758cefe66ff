"""Training objectives of the separator, per (clip, query) item and their weighted mean.

``"snr_sisnr"`` is the objective of the paper's released code (a CLAPSep fork): ``-0.9 SNR - 0.1 SI-SNR`` on
waveforms. SNR is undefined for a silent target, which is what absent-query augmentation produces (ask for a sound
that is not in the mixture, expect silence); such items instead penalise the energy of the estimate relative to the
mixture, in dB, which has the same order of magnitude as the SNR terms. ``"l1"`` is AudioSep's waveform L1, which
handles silent targets by itself.
"""

from __future__ import annotations

import torch

from clearsep_data.metrics import EPS, sdr, si_sdr

SILENCE_RATIO = 1e-8
"""A target whose energy is below this fraction of the mixture's counts as silent."""
SILENCE_FLOOR = 1e-4
"""Floor of the silent-target penalty: an estimate 40 dB below the mixture is silent enough."""
SNR_WEIGHT = 0.9
SI_SNR_WEIGHT = 0.1


def silent_target_penalty(estimate: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``10 log10(|est|^2 / |mix|^2 + 1e-4)``: from about 0 dB (the mixture passed through) down to -40 dB."""
    ratio = estimate.pow(2).sum(-1) / (mixture.pow(2).sum(-1) + EPS)
    return 10 * torch.log10(ratio + SILENCE_FLOOR)


def item_losses(
    estimate: torch.Tensor, target: torch.Tensor, mixture: torch.Tensor, kind: str = "snr_sisnr"
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
    estimate, target, mixture = estimate.float(), target.float(), mixture.float()[:, None, :]
    if kind == "l1":
        return (estimate - target).abs().mean(-1)
    if kind != "snr_sisnr":
        raise ValueError(f"unknown loss kind {kind!r}; use 'snr_sisnr' or 'l1'")
    audible = -(SNR_WEIGHT * sdr(target, estimate) + SI_SNR_WEIGHT * si_sdr(target, estimate))
    silent = target.pow(2).sum(-1) < SILENCE_RATIO * mixture.pow(2).sum(-1)
    return torch.where(silent, silent_target_penalty(estimate, mixture), audible)


def separation_loss(
    estimate: torch.Tensor,
    target: torch.Tensor,
    mixture: torch.Tensor,
    kind: str = "snr_sisnr",
    weights: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted mean over (clip, query) items of :func:`item_losses`.

    Args:
        estimate: separated waveforms ``(B, Q, T)``.
        target: reference waveforms ``(B, Q, T)``; all-zero for queries absent from the mixture.
        mixture: the input mixtures ``(B, T)``.
        kind: ``"snr_sisnr"`` (default) or ``"l1"``.
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
