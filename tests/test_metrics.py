"""clearsep_data.metrics against torchmetrics, hand-computed values and edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio, signal_noise_ratio

from clearsep_data.metrics import energy_db, sdr, si_sdr

T = 160_000  # 10 s at 16 kHz


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _real_shaped(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """References (B, Q, T) at speech-like levels and estimates at several noise levels and gains."""
    g = _generator(seed)
    reference = 0.1 * torch.randn(3, 2, T, generator=g, dtype=torch.float64)
    reference[..., : T // 4] *= 0.01  # a quiet stretch, as real events have
    noise_levels = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64).view(3, 1, 1)
    gains = torch.tensor([1.0, 0.5], dtype=torch.float64).view(1, 2, 1)
    estimate = gains * reference + noise_levels * 0.1 * torch.randn(3, 2, T, generator=g, dtype=torch.float64)
    return reference.to(dtype), estimate.to(dtype)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.float32, 2e-3)])
def test_sdr_matches_torchmetrics_snr(dtype, tolerance):
    reference, estimate = _real_shaped(dtype=dtype)
    ours = sdr(reference, estimate)
    theirs = signal_noise_ratio(estimate, reference)
    assert ours.shape == (3, 2)
    torch.testing.assert_close(ours, theirs, atol=tolerance, rtol=0)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.float32, 2e-3)])
def test_si_sdr_matches_torchmetrics_zero_mean(dtype, tolerance):
    reference, estimate = _real_shaped(seed=1, dtype=dtype)
    estimate = estimate + 0.05  # a DC offset: removed by the zero-mean convention
    ours = si_sdr(reference, estimate)
    theirs = scale_invariant_signal_distortion_ratio(estimate, reference, zero_mean=True)
    assert ours.shape == (3, 2)
    torch.testing.assert_close(ours, theirs, atol=tolerance, rtol=0)


def test_random_signals_match_torchmetrics_over_a_wide_range():
    g = _generator(2)
    reference = torch.randn(64, 1000, generator=g, dtype=torch.float64)
    estimate = torch.randn(64, 1, generator=g, dtype=torch.float64).exp() * reference
    estimate = estimate + torch.randn(64, 1, generator=g, dtype=torch.float64).exp() * torch.randn(
        64, 1000, generator=g, dtype=torch.float64
    )
    torch.testing.assert_close(sdr(reference, estimate), signal_noise_ratio(estimate, reference), atol=1e-7, rtol=0)
    torch.testing.assert_close(
        si_sdr(reference, estimate),
        scale_invariant_signal_distortion_ratio(estimate, reference, zero_mean=True),
        atol=1e-7,
        rtol=0,
    )


def _orthogonal_pair(length: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-mean reference and a zero-mean noise orthogonal to it, both of unit energy."""
    g = _generator(3)
    reference = torch.randn(length, generator=g, dtype=torch.float64)
    reference -= reference.mean()
    noise = torch.randn(length, generator=g, dtype=torch.float64)
    noise -= noise.mean()
    noise -= (noise @ reference) / (reference @ reference) * reference
    return reference / reference.norm(), noise / noise.norm()


@pytest.mark.parametrize("ratio_db", [-10.0, 0.0, 6.0, 20.0, 45.0])
def test_sdr_of_reference_plus_noise_of_known_energy(ratio_db):
    reference, noise = _orthogonal_pair()
    reference = 0.3 * reference
    noise = noise * 0.3 * 10 ** (-ratio_db / 20)  # |s|^2 / |n|^2 = 10^(ratio/10)
    assert sdr(reference, reference + noise, eps=0.0).item() == pytest.approx(ratio_db, abs=1e-9)
    assert si_sdr(reference, reference + noise, eps=0.0).item() == pytest.approx(ratio_db, abs=1e-9)
    # The default eps biases values by far less than a reporting digit at these (quiet) levels.
    assert sdr(reference, reference + noise).item() == pytest.approx(ratio_db, abs=0.02)
    assert si_sdr(reference, reference + noise).item() == pytest.approx(ratio_db, abs=0.02)


def test_si_sdr_ignores_gain_but_sdr_does_not():
    reference, noise = _orthogonal_pair()
    estimate = 0.25 * reference + 0.025 * noise  # 20 dB after rescaling, 2.5 dB without
    assert si_sdr(reference, estimate, eps=0.0).item() == pytest.approx(20.0, abs=1e-9)
    assert si_sdr(reference, -3.0 * estimate, eps=0.0).item() == pytest.approx(20.0, abs=1e-9)
    expected_sdr = 10 * math.log10(1.0 / (0.75**2 + 0.025**2))
    assert sdr(reference, estimate, eps=0.0).item() == pytest.approx(expected_sdr, abs=1e-9)
    assert sdr(reference, 2 * reference, eps=0.0).item() == pytest.approx(0.0, abs=1e-9)


def test_hand_computed_four_samples():
    reference = torch.tensor([3.0, -0.5, 2.0, 7.0], dtype=torch.float64)
    estimate = torch.tensor([2.5, 0.0, 2.0, 8.0], dtype=torch.float64)
    # |s|^2 = 62.25, |s - s_hat|^2 = 1.5
    assert sdr(reference, estimate, eps=0.0).item() == pytest.approx(10 * math.log10(62.25 / 1.5), abs=1e-12)
    centred_ref = reference - reference.mean()
    centred_est = estimate - estimate.mean()
    target = (centred_est @ centred_ref) / (centred_ref @ centred_ref) * centred_ref
    expected = 10 * math.log10((target @ target) / ((centred_est - target) @ (centred_est - target)))
    assert si_sdr(reference, estimate, eps=0.0).item() == pytest.approx(expected, abs=1e-12)


def test_energy_db():
    g = _generator(4)
    reference = torch.randn(2, 5, 1000, generator=g)
    assert torch.allclose(energy_db(0.1 * reference, reference), torch.full((2, 5), -20.0), atol=1e-4)
    assert torch.allclose(energy_db(reference, reference), torch.zeros(2, 5), atol=1e-6)
    assert energy_db(torch.zeros(1000), reference[0, 0]).item() < -100


def test_mixture_broadcasts_against_each_query():
    g = _generator(5)
    references = torch.randn(2, 3, 800, generator=g)
    mixture = references.sum(1)
    broadcast = sdr(references, mixture.unsqueeze(1))
    looped = torch.stack([sdr(references[:, q], mixture) for q in range(3)], dim=1)
    torch.testing.assert_close(broadcast, looped)


def test_silent_signals_give_finite_values():
    silent = torch.zeros(2, T)
    loud = 0.1 * torch.randn(2, T, generator=_generator(6))
    # A silent estimate of a real source scores 0 dB (nothing recovered, nothing added).
    assert torch.allclose(sdr(loud, silent), torch.zeros(2), atol=1e-4)
    assert torch.allclose(si_sdr(loud, silent), torch.zeros(2), atol=1e-4)
    # Sound where the reference is silent is heavily penalised, but finite (eps bounds it).
    penalty = sdr(silent, loud)
    assert torch.isfinite(penalty).all() and (penalty < -100).all()
    assert torch.isfinite(si_sdr(silent, loud)).all() and (si_sdr(silent, loud) < -100).all()
    # Both silent: 0 dB, never NaN.
    assert sdr(silent, silent).eq(0).all() and si_sdr(silent, silent).eq(0).all()
    # A perfect estimate is bounded by eps, not infinite.
    perfect = sdr(loud, loud)
    assert torch.isfinite(perfect).all() and (perfect > 100).all()


def test_gradients_are_finite_on_degenerate_inputs():
    """The training loss uses these metrics: silent targets and perfect estimates must not give NaN gradients."""
    target = torch.zeros(3, 1000)
    target[1] = torch.randn(1000, generator=_generator(7))
    estimate = torch.zeros(3, 1000)
    estimate[2] = target[1]
    estimate.requires_grad_(True)
    (sdr(target, estimate).sum() + si_sdr(target, estimate).sum()).backward()
    assert torch.isfinite(estimate.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_computed_in_float32(dtype):
    reference, estimate = _real_shaped(seed=8)
    reference, estimate = 5 * reference, 5 * estimate  # sums of squares beyond float16's range
    expected_sdr = sdr(reference.to(dtype).float(), estimate.to(dtype).float())
    expected_si_sdr = si_sdr(reference.to(dtype).float(), estimate.to(dtype).float())
    got_sdr = sdr(reference.to(dtype), estimate.to(dtype))
    got_si_sdr = si_sdr(reference.to(dtype), estimate.to(dtype))
    assert got_sdr.dtype == torch.float32 and torch.isfinite(got_sdr).all()
    torch.testing.assert_close(got_sdr, expected_sdr)
    torch.testing.assert_close(got_si_sdr, expected_si_sdr)
    assert energy_db(estimate.to(dtype), reference.to(dtype)).dtype == torch.float32


def test_float64_inputs_stay_float64():
    reference, estimate = _real_shaped(seed=9, dtype=torch.float64)
    assert sdr(reference, estimate).dtype == torch.float64
    assert si_sdr(reference, estimate).dtype == torch.float64
