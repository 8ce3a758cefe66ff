"""Procedural sound synthesizers for the demo corpus, one per demo class, vectorised with numpy.

Every synthesizer has the signature ``(rng, n_samples, sampling_rate) -> np.ndarray`` (float64, mono)
and draws its pitch, timing, timbre and loudness contour from ``rng``, so no two events are the
same waveform. All tonal components are generated band limited (no partial at or above 0.45 of the
sampling rate) and noise is shaped in the frequency domain with the same limit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Synthesizer = Callable[[np.random.Generator, int, int], np.ndarray]

BAND_LIMIT = 0.45
"""Highest frequency any synthesizer produces, as a fraction of the sampling rate."""

RESONANCE_LIMIT = 0.35
"""Highest frequency of a short decaying resonance (a click, a droplet), whose spectrum is wide."""


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def phase_of(frequency: np.ndarray | float, n_samples: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Instantaneous phase (radians) of an oscillator following ``frequency`` (Hz, scalar or per sample)."""
    frequency = np.broadcast_to(np.asarray(frequency, dtype=np.float64), (n_samples,))
    return rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(frequency) / sampling_rate


def band_limited_pulses(phase: np.ndarray, n_harmonics: int) -> np.ndarray:
    """A pulse train with ``n_harmonics`` equal-amplitude harmonics (closed-form Dirichlet kernel), peak 1."""
    half = np.sin(0.5 * phase)
    safe = np.where(np.abs(half) < 1e-9, 1.0, half)
    pulses = np.sin((n_harmonics + 0.5) * phase) / (2 * safe) - 0.5
    return np.where(np.abs(half) < 1e-9, n_harmonics, pulses) / n_harmonics


def harmonic_tone(phase: np.ndarray, amplitudes: np.ndarray, max_frequency: float, sampling_rate: int) -> np.ndarray:
    """Sum of harmonics ``k * phase`` weighted by ``amplitudes[k-1]``, dropping those above the band limit.

    ``max_frequency`` is the highest fundamental the phase reaches, so every kept harmonic stays in band.
    """
    keep = int(min(len(amplitudes), BAND_LIMIT * sampling_rate // max(max_frequency, 1.0)))
    ks = np.arange(1, keep + 1)[:, None]
    return (np.asarray(amplitudes[:keep])[:, None] * np.sin(ks * phase[None, :])).sum(axis=0)


def shaped_noise(rng: np.random.Generator, n_samples: int, sampling_rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White noise filtered by the magnitude response ``gain(frequencies_hz)``, band limited, unit RMS."""
    size = fast_fft_length(n_samples)  # noise is stationary: make a little more, at a length FFTs like
    spectrum = np.fft.rfft(rng.standard_normal(size))
    frequencies = np.fft.rfftfreq(size, 1 / sampling_rate)
    response = np.where(frequencies < BAND_LIMIT * sampling_rate, gain(frequencies), 0.0)
    noise = np.fft.irfft(spectrum * response, size)[:n_samples]
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def fast_fft_length(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (pocketfft is slow on lengths with large prime factors)."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def time_varying_filter(
    signal: np.ndarray, sampling_rate: int, gains: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Filter ``signal`` with a response that changes over time, by STFT masking (~32 ms frames, 50% overlap).

    ``gains(frame_times_s, frequencies_hz)`` returns the magnitude response, shape (frames, bins).
    A square-root Hann window on analysis and synthesis gives perfect reconstruction for unit gains.
    """
    n_fft = int(2 ** np.round(np.log2(0.032 * sampling_rate)))
    hop = n_fft // 2
    n_frames = len(signal) // hop + 2
    padded = np.zeros((n_frames + 1) * hop)
    padded[hop : hop + len(signal)] = signal
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    frequencies = np.fft.rfftfreq(n_fft, 1 / sampling_rate)
    response = gains(np.arange(n_frames) * hop / sampling_rate, frequencies)
    response = np.where(frequencies < BAND_LIMIT * sampling_rate, response, 0.0)
    filtered = np.fft.irfft(np.fft.rfft(frames * window) * response, n_fft) * window
    out = np.zeros_like(padded)
    out[: n_frames * hop].reshape(n_frames, hop)[:] += filtered[:, :hop]
    out[hop : (n_frames + 1) * hop].reshape(n_frames, hop)[:] += filtered[:, hop:]
    return out[hop : hop + len(signal)]


def scatter(n_samples: int, starts: np.ndarray, grains: np.ndarray) -> np.ndarray:
    """Add the rows of ``grains`` (count, length) into a silent signal at sample offsets ``starts``."""
    out = np.zeros(n_samples + grains.shape[1])
    index = np.clip(np.asarray(starts, dtype=np.int64), 0, n_samples - 1)[:, None] + np.arange(grains.shape[1])[None, :]
    np.add.at(out, index, grains)
    return out[:n_samples]


def ringing(frequencies: np.ndarray, decays_s: np.ndarray, length: int, sampling_rate: int) -> np.ndarray:
    """Exponentially decaying sinusoids, one row per (frequency, decay) pair: the sound of a struck resonance.

    A 0.5 ms onset ramp keeps the strike from splattering energy up to the Nyquist frequency.
    Computed as powers of the complex pole (a running product), much cheaper than ``exp * sin``.
    """
    poles = np.exp(-1 / (np.asarray(decays_s) * sampling_rate) + 2j * np.pi * np.asarray(frequencies) / sampling_rate)
    steps = np.empty((len(poles), length), dtype=np.complex128)
    steps[:, :1] = 1.0
    steps[:, 1:] = poles[:, None]
    onset = np.sin(0.5 * np.pi * np.minimum(np.arange(length) / (0.0005 * sampling_rate), 1.0)) ** 2
    return onset * np.cumprod(steps, axis=1).imag


def attack_decay(length: int, sampling_rate: int, attack_s: float, decay_s: float) -> np.ndarray:
    """An envelope rising linearly over ``attack_s`` then decaying exponentially with time constant ``decay_s``."""
    t = np.arange(length) / sampling_rate
    return np.minimum(t / attack_s, 1.0) * np.exp(-np.maximum(t - attack_s, 0.0) / decay_s)


def event_times(rng: np.random.Generator, seconds: float, mean_gap_s: float, jitter: float) -> np.ndarray:
    """Onset times in ``[0, seconds)``, starting at 0, with gaps of ``mean_gap_s`` randomly stretched by ``±jitter``."""
    count = int(seconds / (mean_gap_s * (1 - jitter))) + 2
    gaps = mean_gap_s * rng.uniform(1 - jitter, 1 + jitter, count)
    times = np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
    return times[times < seconds]


def slow_wander(rng: np.random.Generator, n_samples: int, sampling_rate: int, rate_hz: float) -> np.ndarray:
    """A smooth random curve with zero mean and unit peak, changing at about ``rate_hz``."""
    knots = max(int(n_samples / sampling_rate * rate_hz) + 2, 2)
    curve = np.interp(np.linspace(0, knots - 1, n_samples), np.arange(knots), rng.uniform(-1, 1, knots))
    return curve - curve.mean()


# ---------------------------------------------------------------------------------------------
# The nine demo classes
# ---------------------------------------------------------------------------------------------


def speech(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """Formant babble: a glottal pulse train through three moving formants, with a syllable-rate envelope."""
    seconds = n_samples / sampling_rate
    t = np.arange(n_samples) / sampling_rate
    syllable_s = 1 / rng.uniform(3.0, 6.0)
    onsets = event_times(rng, seconds, syllable_s, 0.35)
    index = np.searchsorted(onsets, t, side="right") - 1
    ends = np.append(onsets[1:], seconds)
    position = (t - onsets[index]) / (ends - onsets)[index]
    voiced = rng.uniform(size=len(onsets)) > 0.15  # some syllables are pauses between "words"
    voiced[0] = True
    loudness = voiced * rng.uniform(0.5, 1.0, len(onsets))
    envelope = loudness[index] * np.sin(np.pi * position) ** 0.7

    f0_base = rng.uniform(95, 230)
    accents = np.interp(t, onsets, rng.uniform(-0.12, 0.15, len(onsets)))
    f0 = f0_base * (1 + accents + 0.04 * slow_wander(rng, n_samples, sampling_rate, 2.0)) * (1 - 0.1 * t / max(seconds, 1))
    source = band_limited_pulses(phase_of(f0, n_samples, sampling_rate, rng), int(BAND_LIMIT * sampling_rate / f0.max()))
    source = source + 0.05 * rng.standard_normal(n_samples)  # aspiration

    centres = onsets + 0.5 * (ends - onsets)
    formants = [rng.uniform(lo, hi, len(onsets)) for lo, hi in ((300, 850), (850, 2300), (2300, 3300))]
    bandwidths = rng.uniform(60, 120) * np.array([1.0, 1.4, 2.0])

    def gains(frame_times: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
        response = np.zeros((len(frame_times), len(frequencies)))
        for targets, bandwidth, level in zip(formants, bandwidths, (1.0, 0.6, 0.3)):
            centre = np.interp(frame_times, centres, targets)[:, None]
            response += level / (1 + ((frequencies[None, :] - centre) / (bandwidth / 2)) ** 2)
        return response / (1 + frequencies / 1500)

    return time_varying_filter(source, sampling_rate, gains) * envelope


def bark(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """Short noisy harmonic bursts with a fast attack and a rising-falling pitch, in irregular series."""
    out = np.zeros(n_samples)
    f0_base = rng.uniform(350, 850)
    brightness = rng.uniform(0.6, 1.2)
    noisiness = rng.uniform(0.25, 0.6)
    for onset in event_times(rng, n_samples / sampling_rate, rng.uniform(0.3, 0.7), 0.4):
        start = int(onset * sampling_rate)
        length = min(int(rng.uniform(0.1, 0.25) * sampling_rate), n_samples - start)
        u = np.linspace(0, 1, length)
        f0 = f0_base * rng.uniform(0.9, 1.1) * (1 + 0.35 * np.sin(np.pi * u**0.6)) * (1 + 0.03 * rng.standard_normal(length))
        tone = harmonic_tone(
            phase_of(f0, length, sampling_rate, rng),
            rng.uniform(0.5, 1.0, 12) / np.arange(1, 13) ** brightness,
            f0.max(),
            sampling_rate,
        )
        tone /= np.abs(tone).max() + 1e-12
        hiss = shaped_noise(rng, length, sampling_rate, lambda f: 1 / (1 + ((f - 1300) / 700) ** 2))
        burst = (tone + noisiness * hiss) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(30, 60) * u * length / sampling_rate))
        out[start : start + length] += burst * attack_decay(length, sampling_rate, rng.uniform(0.003, 0.008), rng.uniform(0.04, 0.09))
    return out


def chirp(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """Repeated fast FM sweeps spanning a few kHz (a bird's call), grouped in phrases."""
    top = 0.42 * sampling_rate
    low = min(rng.uniform(1800, 3500), 0.5 * top)
    high = min(low + rng.uniform(1500, 3500), top)
    chirp_s = rng.uniform(0.03, 0.12)
    shape = rng.integers(3)  # 0 up-sweep, 1 down-sweep, 2 up then down
    out = np.zeros(n_samples)
    phrase_gap = rng.uniform(0.4, 1.2)
    seconds = n_samples / sampling_rate
    phrase_start = 0.0
    while phrase_start < seconds:
        count = int(rng.integers(3, 9))
        onsets = phrase_start + np.arange(count) * (chirp_s + rng.uniform(0.04, 0.15))
        for onset in onsets[onsets < seconds]:
            start = int(onset * sampling_rate)
            length = min(int(chirp_s * rng.uniform(0.85, 1.15) * sampling_rate), n_samples - start)
            u = np.linspace(0, 1, length)
            sweep = {0: u, 1: 1 - u, 2: np.sin(np.pi * u)}[int(shape)]
            frequency = low + (high - low) * sweep
            phase = phase_of(frequency, length, sampling_rate, rng)
            tone = np.sin(phase) + (0.15 * np.sin(2 * phase) if 2 * high < BAND_LIMIT * sampling_rate else 0.0)
            out[start : start + length] += tone * np.sin(np.pi * u) ** 2 * rng.uniform(0.6, 1.0)
        phrase_start = onsets[-1] + chirp_s + phrase_gap * rng.uniform(0.7, 1.3)
    return out


def siren(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """A harmonic tone whose pitch sweeps periodically: a slow wail or a fast yelp."""
    t = np.arange(n_samples) / sampling_rate
    centre = rng.uniform(650, 1000)
    depth = rng.uniform(0.2, 0.4)
    period = rng.uniform(2.0, 5.0) if rng.uniform() < 0.7 else rng.uniform(0.25, 0.5)
    cycle = (t / period + rng.uniform()) % 1.0
    sweep = np.where(cycle < 0.6, cycle / 0.6, (1 - cycle) / 0.4) * 2 - 1  # rises slower than it falls
    frequency = centre * (1 + depth * sweep)
    amplitudes = rng.uniform(0.6, 1.0, 8) / np.arange(1, 9) ** rng.uniform(0.8, 1.5)
    tone = harmonic_tone(phase_of(frequency, n_samples, sampling_rate, rng), amplitudes, frequency.max(), sampling_rate)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.15)
    return tone * fade


def engine(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """A low harmonic hum of the crankshaft, amplitude modulated at the firing rate, over a noisy rumble."""
    rotation = rng.uniform(14, 40) * (1 + 0.08 * slow_wander(rng, n_samples, sampling_rate, 0.5))
    phase = phase_of(rotation, n_samples, sampling_rate, rng)
    hum = band_limited_pulses(phase, int(rng.uniform(400, 900) / rotation.max()) + 1)
    cylinders = int(rng.choice([2, 3, 4]))  # firing events per crankshaft revolution
    firing = 1 + rng.uniform(0.4, 0.8) * np.cos(cylinders * phase)
    cutoff = rng.uniform(150, 300)
    rumble = shaped_noise(rng, n_samples, sampling_rate, lambda f: 1 / (1 + (f / cutoff) ** 2))
    hum = hum / (np.sqrt(np.mean(hum**2)) + 1e-12)
    return hum * firing + rng.uniform(0.3, 0.7) * rumble * (0.7 + 0.3 * firing)


BELL_PARTIALS = (
    np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.66, 3.0, 4.0, 5.33]),  # church-bell-like
    np.array([1.0, 2.76, 5.40, 8.93, 13.34]),  # free bar (glockenspiel-like)
    np.array([1.0, 1.59, 2.14, 2.30, 2.65, 2.92, 3.16, 3.50]),  # plate / gong-like
)


def bell(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """Inharmonic partials with long, frequency-dependent decays, struck one or a few times."""
    family = BELL_PARTIALS[int(rng.integers(len(BELL_PARTIALS)))]
    fundamental = rng.uniform(250, 1000)
    frequencies = fundamental * family * rng.uniform(0.985, 1.015, len(family))
    frequencies = frequencies[frequencies < BAND_LIMIT * sampling_rate]
    sustain = rng.uniform(0.8, 2.5)
    decays = sustain * (fundamental / frequencies) ** 0.7
    amplitudes = rng.uniform(0.3, 1.0, len(frequencies))
    strike_gap = rng.uniform(0.7, 2.5)
    length = min(n_samples, int(4 * sustain * sampling_rate))
    strike = (amplitudes[:, None] * ringing(frequencies, decays, length, sampling_rate)).sum(axis=0)
    clapper = int(0.004 * sampling_rate)
    strike[:clapper] += 0.3 * shaped_noise(rng, clapper, sampling_rate, np.ones_like) * np.hanning(clapper)
    onsets = event_times(rng, n_samples / sampling_rate, strike_gap, 0.2)[:4]
    return scatter(n_samples, onsets * sampling_rate, strike[None, :] * rng.uniform(0.6, 1.0, (len(onsets), 1)))


def rain(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """Broadband filtered noise with slowly changing intensity, plus random droplet clicks."""
    low_cut = rng.uniform(300, 900)
    tilt = rng.uniform(0.3, 1.0)
    wash = shaped_noise(rng, n_samples, sampling_rate, lambda f: (f / low_cut) ** 2 / (1 + (f / low_cut) ** 2) / (1 + f / 4000) ** tilt)
    wash *= 1 + 0.3 * slow_wander(rng, n_samples, sampling_rate, 0.7)
    rate = rng.uniform(15, 70)
    count = rng.poisson(rate * n_samples / sampling_rate)
    starts = rng.integers(0, n_samples, count)
    top = RESONANCE_LIMIT * sampling_rate
    grain = int(0.03 * sampling_rate)
    droplets = ringing(
        np.minimum(rng.uniform(1500, 5000, count), top), rng.uniform(0.002, 0.006, count), grain, sampling_rate
    ) * rng.lognormal(0.0, 0.5, (count, 1))
    return wash * rng.uniform(0.3, 0.6) + 0.6 * scatter(n_samples, starts, droplets)


def tick_tock(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """A clock: short periodic clicks alternating between a higher "tick" and a lower "tock"."""
    interval = rng.uniform(0.25, 0.6)
    seconds = n_samples / sampling_rate
    onsets = np.arange(rng.uniform(0, min(interval, seconds / 2)), seconds, interval)
    onsets = onsets + rng.normal(0, 0.002, len(onsets))
    top = RESONANCE_LIMIT * sampling_rate
    tick = min(rng.uniform(2200, 3800), 0.7 * top) * np.array([1.0, 1.53, 2.11])
    tock = min(rng.uniform(1000, 1800), 0.4 * top) * np.array([1.0, 1.47, 2.31])
    decays = rng.uniform(0.002, 0.006, 3)
    length = int(0.03 * sampling_rate)
    grains = np.stack([
        ringing(tick[tick < top], decays[tick < top], length, sampling_rate).sum(0),
        ringing(tock[tock < top], 1.5 * decays[tock < top], length, sampling_rate).sum(0),
    ])
    click = int(0.0015 * sampling_rate)
    grains[:, :click] += 0.4 * np.stack([shaped_noise(rng, click, sampling_rate, np.ones_like) for _ in range(2)]) * np.hanning(click)
    chosen = grains[np.arange(len(onsets)) % 2] * rng.uniform(0.85, 1.0, (len(onsets), 1))
    return scatter(n_samples, onsets * sampling_rate, chosen)


MAJOR, MINOR = np.array([0, 2, 4, 5, 7, 9, 11]), np.array([0, 2, 3, 5, 7, 8, 10])


def piano(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """A random melody in a random key: notes of slightly inharmonic partials with pitch-dependent decay."""
    scale = MAJOR if rng.uniform() < 0.5 else MINOR
    tonic = int(rng.integers(48, 67))
    beat = rng.uniform(0.15, 0.45)
    out = np.zeros(n_samples)
    degree = int(rng.integers(0, 7))
    for onset in event_times(rng, n_samples / sampling_rate, beat, 0.0):
        chord = [degree] + ([degree + int(rng.choice([2, 4]))] if rng.uniform() < 0.2 else [])
        for step in chord:
            midi = tonic + 12 * (step // 7) + scale[step % 7]
            frequency = 440.0 * 2 ** ((midi - 69) / 12)
            start = int(onset * sampling_rate)
            length = min(n_samples - start, int(beat * rng.uniform(1.5, 3.5) * sampling_rate))
            ks = np.arange(1, 9)
            partials = frequency * ks * np.sqrt(1 + 4e-4 * ks**2)
            ks, partials = ks[partials < BAND_LIMIT * sampling_rate], partials[partials < BAND_LIMIT * sampling_rate]
            decay = 1.2 * (261.6 / frequency) ** 0.5
            velocity = rng.uniform(0.5, 1.0)
            note = ((velocity / ks**1.3)[:, None] * ringing(partials, decay / ks**0.6, length, sampling_rate)).sum(0)
            release = np.minimum(1.0, (length - np.arange(length)) / (0.06 * sampling_rate))
            out[start : start + length] += note * release
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]), -3, 10))
    return out


def room_tone(rng: np.random.Generator, n_samples: int, sampling_rate: int) -> np.ndarray:
    """The unlabelled background: soft, dark, slowly fluctuating noise (distant traffic, ventilation)."""
    corner = rng.uniform(100, 400)
    noise = shaped_noise(rng, n_samples, sampling_rate, lambda f: 1 / np.sqrt(1 + (f / corner) ** 2) / (1 + f / 3000))
    return noise * (1 + 0.2 * slow_wander(rng, n_samples, sampling_rate, 0.3))
