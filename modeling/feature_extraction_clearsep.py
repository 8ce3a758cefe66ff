"""Feature extractor of ClearSep: the audio preparation in front of :class:`ClearSepModel`.

The model takes mono waveforms at ``config.sampling_rate`` (``input_values``); the extractor turns any waveform
(``(samples,)`` or ``(channels, samples)``, numpy or torch, any rate) into that: it downmixes the channels and
resamples with soxr. It also owns the chunk plan by which long inputs are cut for inference (:meth:`chunk_plan`).
The small array helpers it is made of (:func:`resample`, :func:`fit_length`, :func:`downmix`) are the ones the rest
of ClearSep uses as well (``clearsep_data.audio`` re-exports them).

This file imports only third-party packages: it is shipped with saved models as remote code.
"""

from __future__ import annotations

import numpy as np
import soxr
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import is_torch_tensor


def fit_length(waveform: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the last axis of ``waveform`` to ``length`` samples."""
    if waveform.shape[-1] >= length:
        return waveform[..., :length]
    pad = [(0, 0)] * (waveform.ndim - 1) + [(0, length - waveform.shape[-1])]
    return np.pad(waveform, pad)


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality); a no-op when the rates match."""
    if orig_rate == target_rate:
        return waveform
    flat = waveform.reshape(-1, waveform.shape[-1]).T  # soxr wants (time, channels)
    out = soxr.resample(np.ascontiguousarray(flat, dtype=np.float32), orig_rate, target_rate, quality="HQ")
    return out.T.reshape(*waveform.shape[:-1], -1)


def downmix(waveform: np.ndarray) -> np.ndarray:
    """The mean over the channels of a ``(channels, samples)`` waveform; a 1-D waveform is returned as it is."""
    return waveform.mean(axis=0) if waveform.ndim == 2 else waveform


class ClearSepFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Prepares waveforms for [`ClearSepModel`]: mono float32 `input_values` at the model's sampling rate.

    Each waveform is downmixed (a `(channels, samples)` array is averaged over its channels) and resampled with soxr
    from `sampling_rate` to the extractor's rate. Inputs keep their own lengths unless `padding` is asked for.
    [`~ClearSepFeatureExtractor.chunk_plan`] cuts a long input into overlapping chunks on the model's time grid;
    [`~ClearSepFeatureExtractor.from_model_config`] takes the rate and the chunking from a [`ClearSepConfig`].

    Args:
        feature_size (`int`, *optional*, defaults to 1):
            Values per time step of `input_values` (1: a waveform).
        sampling_rate (`int`, *optional*, defaults to 16000):
            The model's rate (`config.sampling_rate`); inputs at other rates are resampled to it.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value that pads shorter waveforms when `padding` is used.
        return_attention_mask (`bool`, *optional*, defaults to `False`):
            Whether padding returns an `attention_mask` (the model takes none).
        chunk_length (`int`, *optional*, defaults to 160000):
            Output samples of one inference chunk (a multiple of `chunk_quantum`).
        chunk_context (`int`, *optional*, defaults to 0):
            Samples of context added on each side of a chunk (a multiple of `chunk_quantum`).
        chunk_quantum (`int`, *optional*, defaults to 1):
            The model's time grid in samples: chunks start on it, and neighbouring chunks crossfade over it.
    """

    model_input_names = ["input_values"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 16_000,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        chunk_length: int = 160_000,
        chunk_context: int = 0,
        chunk_quantum: int = 1,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        self.chunk_length = chunk_length
        self.chunk_context = chunk_context
        self.chunk_quantum = chunk_quantum

    @classmethod
    def from_model_config(cls, config) -> ClearSepFeatureExtractor:
        """The extractor of a [`ClearSepConfig`]: its rate, chunks of `segment_seconds` and their context.

        The context is `chunk_context_seconds`, or by default the network's temporal receptive field plus half the
        crossfade, with which every chunk's output equals that of the whole input up to float rounding.
        """
        quantum = config.sample_quantum
        if config.chunk_context_seconds is None:
            context = config.receptive_field_frames * config.hop_length + config.n_fft + quantum // 2
        else:
            context = int(config.chunk_context_seconds * config.sampling_rate)
        return cls(
            sampling_rate=config.sampling_rate,
            chunk_length=_round_up(int(config.segment_seconds * config.sampling_rate), quantum),
            chunk_context=_round_up(context, quantum),
            chunk_quantum=quantum,
        )

    def chunk_plan(self, length: int, chunk_seconds: float | None = None) -> list[tuple[int, int, int, int]]:
        """How a `length`-sample input is cut: `(in_start, in_end, out_start, out_end)` per chunk.

        Chunk starts are multiples of `chunk_quantum` samples so that every chunk sees the same STFT frame and
        pooling grid as the whole input. Each chunk owns `[out_start, out_end)` (`chunk_seconds` long, default
        `chunk_length` samples) and is extended by `chunk_context` samples on both sides into `[in_start, in_end)`;
        neighbouring outputs are crossfaded over `chunk_quantum` samples.
        """
        if chunk_seconds is None:
            chunk = self.chunk_length
        else:
            chunk = _round_up(int(chunk_seconds * self.sampling_rate), self.chunk_quantum)
        context = self.chunk_context
        return [
            (max(0, start - context), min(length, start + chunk + context), start, min(start + chunk, length))
            for start in range(0, length, chunk)
        ]

    def __call__(
        self,
        audio,
        sampling_rate: int | None = None,
        padding: bool | str = False,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Prepare one waveform or a list (or tuple) of waveforms.

        Args:
            audio: a waveform, 1-D `(samples,)` or `(channels, samples)`, as a numpy array or tensor; or a list of
                such waveforms.
            sampling_rate: rate of `audio`; defaults to the extractor's.
            padding, max_length, pad_to_multiple_of: as [`SequenceFeatureExtractor.pad`]; by default (no padding)
                every waveform keeps its length.
            return_tensors: `"np"` or `"pt"` for one padded array instead of a list.

        Returns:
            [`BatchFeature`] whose `input_values` holds one contiguous float32 `(samples,)` array per input (a list,
            also for a single waveform), or a `(batch, samples)` array with padding / `return_tensors`.

        Raises:
            ValueError: naming the input (`audio #index`) that is empty, has more than two dimensions, looks
                transposed (more channels than samples) or holds NaN or infinite samples.
        """
        waveforms = list(audio) if isinstance(audio, (list, tuple)) else [audio]
        rate = sampling_rate or self.sampling_rate
        values = [self._prepare(waveform, rate, index) for index, waveform in enumerate(waveforms)]
        features = BatchFeature({"input_values": values})
        if not padding and return_tensors is None:
            return features
        return self.pad(
            features,
            padding=padding or True,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            return_tensors=return_tensors,
        )

    def _prepare(self, waveform, rate: int, index: int) -> np.ndarray:
        """A mono float32 waveform at the extractor's rate, or a ValueError saying what is wrong with input #index."""
        array = (
            waveform.detach().float().cpu().numpy()
            if is_torch_tensor(waveform)
            else np.asarray(waveform, dtype=np.float32)
        )
        if array.ndim == 2 and array.shape[0] > array.shape[1]:
            raise ValueError(
                f"audio #{index} has shape {array.shape}: expected (channels, samples); pass the transpose"
            )
        array = downmix(array)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(
                f"audio #{index} must be a non-empty (samples,) or (channels, samples) array, got shape {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"audio #{index} contains NaN or infinite samples")
        return np.ascontiguousarray(resample(array, rate, self.sampling_rate), dtype=np.float32)


ClearSepFeatureExtractor.register_for_auto_class()  # preprocessor_config.json names this file in its auto_map


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


__all__ = ["ClearSepFeatureExtractor", "downmix", "fit_length", "resample"]
