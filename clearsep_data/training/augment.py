"""Augmentation of the sources of artificial training mixtures, for real recordings.

A few hundred clean clips are all round 0 has, and a model trained on them memorises the recordings: on the real-sound
benchmark it separates the training recordings far better than unseen ones. Each source of a synthetic mixture is
therefore varied before mixing, so that mixture and targets stay consistent (the target is the augmented source):

* speed: resampled by a factor in ``1 ± speed`` (soxr), which shifts pitch and tempo together (Kaldi's speed
  perturbation); pitch-preserving time stretch is not done;
* EQ: a random smooth spectral tilt, gains drawn in ``± eq_db`` at log-spaced band centres from 50 Hz to Nyquist and
  interpolated in log frequency, applied in the frequency domain;
* reverb (with probability ``reverb_rate``): convolution with a synthetic room impulse response, a direct path then
  exponentially decaying Gaussian noise (reverberation time drawn in ``rt60``, direct-to-reverberant ratio in
  ``drr_db``);
* gain: a ramp from ``g0`` to ``g1`` dB (each in ``± gain_db``) across the crop, a source coming closer or fading.

EQ and reverb keep the crop's RMS, so the mixing levels and SNRs still mean what they say. Every draw comes from the
example's generator: a micro-batch stays a pure function of ``(seed, process, index)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soxr
import torch

EQ_BANDS = 8
EQ_LOWEST_HZ = 50.0


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation (0 turns one off); made by :meth:`TrainingArguments.mixing_config`."""

    sampling_rate: int
    speed: float = 0.1
    eq_db: float = 6.0
    reverb_rate: float = 0.5
    rt60: tuple[float, float] = (0.1, 0.8)
    drr_db: tuple[float, float] = (0.0, 15.0)
    gain_db: float = 6.0


class Augmenter:
    """Augments one cropped source at a time; :meth:`crop_length` says how long a crop to take for the speed change."""

    def __init__(self, config: AugmentConfig):
        self.config = config

    def speed(self, rng: np.random.Generator) -> float:
        """The speed factor of the next source (> 1: faster and higher)."""
        return float(rng.uniform(1 - self.config.speed, 1 + self.config.speed)) if self.config.speed > 0 else 1.0

    @staticmethod
    def crop_length(length: int, speed: float) -> int:
        """Samples to crop so that ``length`` remain after the speed change."""
        return int(math.ceil(length * speed))

    def __call__(self, crop: np.ndarray, length: int, speed: float, rng: np.random.Generator) -> np.ndarray:
        """``crop`` (taken :meth:`crop_length` long) sped up by ``speed``, equalised, reverberated, ramped: ``length`` samples."""
        config = self.config
        audio = crop.astype(np.float32)
        if speed != 1.0:
            audio = soxr.resample(audio, config.sampling_rate * speed, config.sampling_rate, quality="HQ")
        audio = np.pad(audio, (0, max(0, length - audio.shape[-1])))[:length]
        level = _rms(audio)
        signal = torch.from_numpy(np.ascontiguousarray(audio))
        if config.eq_db > 0:
            signal = self._equalise(signal, rng)
        if config.reverb_rate > 0 and rng.random() < config.reverb_rate:
            signal = self._reverberate(signal, rng)
        audio = signal.numpy()
        audio = audio * (level / _rms(audio)) if level > 0 else audio
        if config.gain_db > 0:
            start, end = rng.uniform(-config.gain_db, config.gain_db, size=2)
            audio = audio * 10 ** (np.linspace(start, end, length) / 20)
        return audio.astype(np.float32)

    def _equalise(self, signal: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        rate = self.config.sampling_rate
        spectrum = torch.fft.rfft(signal)
        frequencies = torch.fft.rfftfreq(signal.shape[-1], 1 / rate).clamp(min=EQ_LOWEST_HZ).log()
        centres = torch.linspace(math.log(EQ_LOWEST_HZ), math.log(rate / 2), EQ_BANDS)
        gains_db = torch.from_numpy(rng.uniform(-self.config.eq_db, self.config.eq_db, size=EQ_BANDS)).float()
        curve = _interpolate(frequencies, centres, gains_db)
        return torch.fft.irfft(spectrum * 10 ** (curve / 20), n=signal.shape[-1])

    def _reverberate(self, signal: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        rir = torch.from_numpy(synthetic_rir(rng, self.config))
        size = signal.shape[-1] + rir.shape[-1] - 1
        wet = torch.fft.irfft(torch.fft.rfft(signal, n=size) * torch.fft.rfft(rir, n=size), n=size)
        return wet[: signal.shape[-1]]


def synthetic_rir(rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB over the drawn RT60, scaled
    to the drawn direct-to-reverberant ratio; ``1.5 * RT60`` long."""
    rt60 = float(rng.uniform(*config.rt60))
    drr_db = float(rng.uniform(*config.drr_db))
    length = max(2, int(1.5 * rt60 * config.sampling_rate))
    time = np.arange(1, length) / config.sampling_rate
    tail = rng.standard_normal(length - 1) * 10 ** (-3 * time / rt60)
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def _interpolate(x: torch.Tensor, points: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``values`` at ``points`` evaluated at ``x`` (held constant outside)."""
    x = x.clamp(points[0], points[-1])
    right = torch.searchsorted(points, x).clamp(1, len(points) - 1)
    left = right - 1
    share = (x - points[left]) / (points[right] - points[left])
    return values[left] + share * (values[right] - values[left])


def _rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


__all__ = ["AugmentConfig", "Augmenter", "synthetic_rir"]
