"""Audio decoding, resampling and encoding shared by the corpus readers, the trainer and the writer.

Decoding goes through torchcodec (FFmpeg), which reads every container AudioSet mirrors use
(wav, flac, ogg, mp3, ...), downmixes and resamples in one pass. In-memory arrays are
resampled with soxr by :func:`resample`, which (with :func:`fit_length`) belongs to the model's
feature extractor (``clearsep_data.modeling.feature_extraction_clearsep``) and is re-exported here.
Tracks are stored as FLAC bytes so that parquet shards are self-contained.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from contextlib import contextmanager
from typing import Union

import numpy as np
import soundfile as sf

from clearsep_data.errors import ClearSepError

AudioSource = Union[str, os.PathLike, bytes]

# Decoded past a segment's end, as some containers time-stamp the first sample late (Vorbis pre-roll).
_RANGE_MARGIN_SECONDS = 0.25


class AudioError(ClearSepError):
    """An audio file or payload that cannot be used, with the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def describe(source: AudioSource) -> str:
    """A short printable name for an audio source (a path, or the size of a byte payload)."""
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def load_audio(
    source: AudioSource,
    sampling_rate: int,
    start_seconds: float | None = None,
    end_seconds: float | None = None,
) -> np.ndarray:
    """Decode ``source`` to a mono float32 waveform at ``sampling_rate``.

    With ``start_seconds``/``end_seconds`` only that segment is returned, exactly
    ``end - start`` seconds long. Times count from the first decoded sample, so codec start-up
    offsets (MP3 encoder delay, Vorbis pre-roll) do not shift or shorten it. A file shorter than the
    requested segment raises :class:`AudioError` rather than returning a short clip.
    """
    name = describe(source)
    with _decoding(name):
        decoder = _open_decoder(source, sample_rate=sampling_rate, num_channels=1)
        if start_seconds is None and end_seconds is None:
            samples = decoder.get_all_samples()
        else:
            origin = decoder.metadata.begin_stream_seconds or 0.0
            stop = None if end_seconds is None else origin + end_seconds + _RANGE_MARGIN_SECONDS
            samples = decoder.get_samples_played_in_range(origin, stop)
    waveform = samples.data.numpy()[0].astype(np.float32, copy=False)
    if start_seconds:
        waveform = waveform[int(round(start_seconds * sampling_rate)) :]
    if end_seconds is not None:
        wanted = int(round((end_seconds - (start_seconds or 0.0)) * sampling_rate))
        if waveform.shape[0] < wanted - sampling_rate // 100:  # tolerate 10 ms of codec padding
            have = waveform.shape[0] / sampling_rate
            raise AudioError(
                name, f"audio is shorter than its segment ({have:.2f} s decoded, {wanted / sampling_rate:.2f} s expected)"
            )
        from clearsep_data.modeling.feature_extraction_clearsep import fit_length

        waveform = fit_length(waveform, wanted)
    if waveform.size == 0:
        raise AudioError(name, "no audio samples decoded")
    return waveform


def load_audio_native(source: AudioSource) -> tuple[np.ndarray, int]:
    """Decode all of ``source`` as it is: a float32 ``(channels, samples)`` waveform and its rate."""
    with _decoding(describe(source)):
        samples = _open_decoder(source).get_all_samples()
    if samples.data.shape[-1] == 0:
        raise AudioError(describe(source), "no audio samples decoded")
    return samples.data.numpy().astype(np.float32, copy=False), int(samples.sample_rate)


def audio_duration(source: AudioSource) -> float:
    """Duration in seconds of ``source``: from the header where libsndfile reads the format
    (exact, and no decoding), else from the samples FFmpeg decodes."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source))
        if info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    with _decoding(describe(source)):
        samples = _open_decoder(source).get_all_samples()
    if samples.data.shape[-1] == 0:
        raise AudioError(describe(source), "no audio samples decoded")
    return samples.data.shape[-1] / samples.sample_rate


def _open_decoder(source: AudioSource, **options):
    """A torchcodec ``AudioDecoder`` for ``source``; missing and empty files are reported as such."""
    from torchcodec.decoders import AudioDecoder

    if not isinstance(source, bytes):
        if not os.path.exists(source):
            raise AudioError(describe(source), "file not found")
        if os.path.getsize(source) == 0:
            raise AudioError(describe(source), "file is empty")
        source = os.fspath(source)
    elif not source:
        raise AudioError(describe(source), "audio payload is empty")
    return AudioDecoder(source, **options)


@contextmanager
def _decoding(name: str):
    """Turn torchcodec's decoding failures (RuntimeError/ValueError) into :class:`AudioError`."""
    try:
        yield
    except AudioError:
        raise
    except Exception as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        detail = re.sub(r"^.*?\.cpp:\d+,\s*", "", lines[0])  # drop torchcodec's C++ source location
        raise AudioError(name, f"cannot decode audio ({detail.strip()[:160]})") from None


class FlacStream:
    """16-bit FLAC bytes of a mono float waveform (clipped to [-1, 1]) written piece by piece, in bounded memory:
    the same bytes as one :func:`encode_flac` of the whole waveform.

    The bytes are kept in memory up to :attr:`SPOOL_BYTES` and in a temporary file beyond, so that an hour-long
    clip's tracks wait on disk, not in the heap, while the rest of the clip is separated."""

    SPOOL_BYTES = 8 << 20

    def __init__(self, sampling_rate: int):
        self._buffer = tempfile.SpooledTemporaryFile(max_size=self.SPOOL_BYTES)
        self._file = sf.SoundFile(self._buffer, "w", samplerate=sampling_rate, channels=1, format="FLAC", subtype="PCM_16")

    def write(self, waveform: np.ndarray) -> None:
        self._file.write(np.clip(waveform, -1.0, 1.0))

    def finish(self) -> bytes:
        """Close the stream; its FLAC bytes (the stream's buffer is let go: the bytes are the one copy)."""
        self._file.close()
        self._buffer.seek(0)
        payload = self._buffer.read()
        self._buffer.close()
        return payload


def encode_flac(waveform: np.ndarray, sampling_rate: int) -> bytes:
    """Encode a mono float waveform as 16-bit FLAC bytes (clipped to [-1, 1])."""
    stream = FlacStream(sampling_rate)
    stream.write(waveform)
    return stream.finish()


def decode_flac(payload: bytes) -> tuple[np.ndarray, int]:
    """Decode FLAC (or any libsndfile format) bytes to a mono float32 waveform and its rate."""
    waveform, rate = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
    return waveform.mean(axis=1), rate


def __getattr__(name: str):
    """``fit_length`` and ``resample`` are the model's (its feature extractor's), loaded on first use: importing the
    model package loads transformers, which the corpus readers and ``clearsep-data stats`` do not need."""
    if name in ("fit_length", "resample"):
        from clearsep_data.modeling import feature_extraction_clearsep

        return getattr(feature_extraction_clearsep, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AudioError",
    "AudioSource",
    "FlacStream",
    "audio_duration",
    "decode_flac",
    "describe",
    "encode_flac",
    "fit_length",
    "load_audio",
    "load_audio_native",
    "resample",
]
