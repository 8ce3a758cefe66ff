"""Augmentation of training sources: what each transform does, and that mixtures stay seeded and consistent."""

from __future__ import annotations

import numpy as np

from clearsep_data.training.augment import AugmentConfig, Augmenter, synthetic_rir
from clearsep_data.training.arguments import TrainingArguments

RATE = 16000
OFF = dict(speed=0.0, eq_db=0.0, reverb_rate=0.0, gain_db=0.0)


def sine(frequency: float, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def peak_hz(signal: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(signal))) * RATE / len(signal))


def rms(signal: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(signal, dtype=np.float64))))


def test_speed_resamples_a_longer_crop_to_the_length_and_raises_the_pitch():
    augmenter = Augmenter(AugmentConfig(RATE, **{**OFF, "speed": 0.2}))
    length = RATE // 2
    crop_length = Augmenter.crop_length(length, 1.1)
    out = augmenter(sine(1000.0)[:crop_length], length, 1.1, np.random.default_rng(0))
    assert crop_length == 8800 and out.shape == (length,) and abs(peak_hz(out) - 1100.0) < 5


def test_eq_and_reverb_keep_the_level_and_the_rir_decays():
    rng = np.random.default_rng(1)
    signal = rng.standard_normal(RATE).astype(np.float32) * 0.1
    config = AugmentConfig(RATE, **{**OFF, "eq_db": 12.0, "reverb_rate": 1.0})
    out = Augmenter(config)(signal, RATE, 1.0, np.random.default_rng(2))
    assert out.shape == signal.shape and abs(rms(out) / rms(signal) - 1) < 1e-3
    assert not np.allclose(out, signal, atol=1e-3)
    rir = synthetic_rir(np.random.default_rng(3), AugmentConfig(RATE, rt60=(0.5, 0.5), drr_db=(10.0, 10.0)))
    assert len(rir) == int(0.75 * RATE) and rir[0] == 1.0
    assert abs(10 * np.log10(np.sum(rir[1:] ** 2)) + 10.0) < 1e-3  # direct-to-reverberant ratio 10 dB
    tenth = len(rir) // 10
    assert np.sum(rir[-tenth:] ** 2) < 1e-4 * np.sum(rir[1:tenth] ** 2)  # 60 dB per RT60: the tail has died away


def test_gain_ramps_across_the_crop():
    out = Augmenter(AugmentConfig(RATE, **{**OFF, "gain_db": 12.0}))(np.ones(RATE, np.float32), RATE, 1.0, np.random.default_rng(4))
    start, end = 20 * np.log10(out[[0, -1]])
    assert start != end and max(abs(start), abs(end)) <= 12.0
    assert np.all(np.diff(20 * np.log10(out)) * np.sign(end - start) >= -1e-4)  # monotone in dB



def test_augment_is_off_by_default_and_configured_from_the_arguments():
    assert TrainingArguments(datasets=["d"], output_dir="o").mixing_config(RATE).augment is None
    config = TrainingArguments(datasets=["d"], output_dir="o", augment=True, augment_reverb=0.2).mixing_config(RATE).augment
    assert config == AugmentConfig(RATE, speed=0.1, eq_db=6.0, reverb_rate=0.2, gain_db=6.0)
