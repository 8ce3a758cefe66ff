"""``ClearSepModel.separate``: audio in, one waveform per query out, at the input's rate and length.

:class:`ClearSepSeparationMixin` prepares the audio (the feature extractor), embeds the positive, audio and negative
queries (:class:`.queries_clearsep.ClearSepQueryMixin`), runs :func:`.chunked_inference.separate_chunks`, applies the
presence head's gate (``config.presence_gate``), sums the outputs of an ontology class's labels, resamples back and
builds the output (:mod:`.separation_output`).
"""

from __future__ import annotations

import numpy as np
import torch

from .chunked_inference import separate_chunks
from .configuration_clearsep import PRESENCE_GATES
from .feature_extraction_clearsep import ClearSepFeatureExtractor, fit_length, resample
from .separation_output import gather_probabilities, gather_queries, per_waveform, separation_output

PRESENT = 0.5
"""The presence probability from which the gates leave an output as it is."""


class ClearSepSeparationMixin:
    """:meth:`separate` for :class:`ClearSepModel`."""

    @torch.inference_mode()
    def separate(
        self,
        audio,
        queries=None,
        sampling_rate: int | None = None,
        *,
        query_audio=None,
        negative_queries=None,
        return_residual: bool = False,
        return_dict: bool = False,
        batch_size: int = 8,
        chunk_seconds: float | None = None,
        use_bf16: bool = False,
        presence_gate: str | None = None,
        return_tensors: str = "np",
    ):
        """Separate the sounds named by ``queries`` from ``audio``.

        Args:
            audio: a waveform, 1-D ``(T,)`` or ``(channels, T)`` (downmixed), as a numpy array or tensor; or a list of
                such waveforms.
            queries: display names or MIDs for that waveform (a list, or one string); for a list of waveforms, one
                list of queries per waveform. A parent class of the vocabulary (``"Dog"``) asks for all of its
                descendants in the clip (``"Bark"``, ``"Howl"``) together; an ontology class outside the vocabulary
                (``"Animal"``, with ``config.ontology``) gives the sum of its nearest vocabulary labels' outputs. With
                ``query_encoder="clap"`` any other text (``"a dog barking in the rain"``) is a query too.
            sampling_rate: rate of ``audio``; defaults to ``config.sampling_rate``. Other rates are resampled to the
                model's and the outputs back to the input's.
            query_audio: audio examples of the sounds to extract (``query_encoder="clap"``): a list of waveforms at
                ``sampling_rate`` (one list per waveform for a list), embedded by the CLAP audio tower; their outputs
                follow those of ``queries``.
            negative_queries: sounds to keep out of every output (as ``queries``: a list, or one list per waveform):
                each output's mask is multiplied by one minus each negative query's mask.
            return_residual: also return the input minus the sum of the outputs (implies ``return_dict``).
            return_dict: return a :class:`ClearSepSeparationOutput` (outputs, their ``level_db`` relative to the
                input, the residual when asked for, ``present_probability`` with a presence head) instead of an array.
            batch_size: how many (clip, chunk) mixture encodings run in one forward pass; each encoding is decoded
                for all of its clip's queries (in one batch on accelerators, one query after the other on CPU).
            chunk_seconds: output length of one chunk of long inputs (default ``config.segment_seconds``). Chunks
                overlap by the network's receptive field, so the result does not depend on the chunking.
            use_bf16: run the network under bfloat16 autocast (the STFTs stay in float32).
            presence_gate: ``"soft"``, ``"hard"`` or ``"none"`` for this call (default ``config.presence_gate``).
            return_tensors: ``"np"`` (default), or ``"pt"`` for float32 ``torch.Tensor`` outputs left on the model's
                device (audio at the model's rate only, without ``return_dict``), e.g. to score them there.

        With a presence head (``config.presence_head``) each output is scaled by ``presence_gate``: by
        ``min(1, 2 p)`` of its presence probability ``p`` (``"soft"``: untouched from 0.5 up, faded to zero below),
        zeroed below 0.5 (``"hard"``) or left as is (``"none"``).

        Returns:
            ``np.ndarray`` ``(Q, T)`` float32 at the input's rate and length, or a :class:`ClearSepSeparationOutput`
            with ``return_dict``/``return_residual``; a list of them for a list of waveforms.
        """
        gate = presence_gate or self.config.presence_gate
        if gate not in PRESENCE_GATES:
            raise ValueError(f"presence_gate must be one of {PRESENCE_GATES}, got {gate!r}")
        single = not isinstance(audio, (list, tuple))
        waveforms = [audio] if single else list(audio)
        positives = per_waveform(queries, len(waveforms), single, "queries")
        examples = per_waveform(query_audio, len(waveforms), single, "audio queries")
        negatives = per_waveform(negative_queries, len(waveforms), single, "negative queries")
        if not all(positive or example for positive, example in zip(positives, examples)):
            raise ValueError("give at least one query per waveform (negative queries only remove from outputs)")
        rate = sampling_rate or self.config.sampling_rate
        if return_tensors not in ("np", "pt"):
            raise ValueError(f"return_tensors must be 'np' or 'pt', got {return_tensors!r}")
        if return_tensors == "pt" and (rate != self.config.sampling_rate or return_dict or return_residual):
            raise ValueError("return_tensors='pt' returns the outputs alone, for audio at the model's sampling rate")
        extractor = self.feature_extractor
        inputs = extractor(waveforms, sampling_rate=rate)["input_values"]  # mono float32 at the model's rate
        was_training = self.training
        self.eval()
        try:
            owners = [self.expand_queries(positive)[1] for positive in positives]
            owners = [owner + list(range(len(positive), len(positive) + len(example)))
                      for owner, positive, example in zip(owners, positives, examples, strict=True)]  # fmt: skip
            embeddings = [
                torch.cat(
                    ([self.query_embeddings(positive)] if positive else [])
                    + ([self.audio_query_embeddings(example, rate)] if example else [])
                    + ([self.query_embeddings(negative)] if negative else [])
                )
                for positive, example, negative in zip(positives, examples, negatives, strict=True)
            ]
            num_negative = [len(embedding) - len(owner) for embedding, owner in zip(embeddings, owners, strict=True)]
            outputs, pooled = separate_chunks(
                self, inputs, embeddings, num_negative, extractor, batch_size, chunk_seconds, use_bf16
            )
            presence = [self._presence(features) for features in pooled]
        finally:
            self.train(was_training)
        outputs = [
            gather_queries(output * torch.from_numpy(presence_factor(probability, gate)).to(output.device)[:, None], owner)
            for output, probability, owner in zip(outputs, presence, owners, strict=True)
        ]
        presence = [
            None if probability is None else gather_probabilities(probability, owner)
            for probability, owner in zip(presence, owners, strict=True)
        ]
        if return_tensors == "pt":
            return outputs[0] if single else outputs
        results = [
            fit_length(resample(output.cpu().numpy(), self.config.sampling_rate, rate), waveform.shape[-1])
            for output, waveform in zip(outputs, waveforms, strict=True)
        ]
        if return_dict or return_residual:
            mixtures = ClearSepFeatureExtractor(sampling_rate=rate)(waveforms, sampling_rate=rate)["input_values"]
            results = [
                separation_output(result, mixture, return_residual, probability)
                for result, mixture, probability in zip(results, mixtures, presence, strict=True)
            ]
        return results[0] if single else results

    def _presence(self, pooled: np.ndarray | None) -> np.ndarray | None:
        """Presence probabilities ``(N,)`` of a clip's pooled head features ``(N, C)`` (``None`` without the head)."""
        if pooled is None:
            return None
        logits = self.presence_head(torch.from_numpy(pooled).to(self.device))
        return torch.sigmoid(logits).cpu().numpy()



def presence_factor(probability: np.ndarray | None, gate: str) -> np.ndarray:
    """The factor ``gate`` puts on each output given its presence probability (1 without the head)."""
    if probability is None or gate == "none":
        return np.ones(1 if probability is None else len(probability), dtype=np.float32)
    if gate == "hard":
        return (probability >= PRESENT).astype(np.float32)
    return np.minimum(probability / PRESENT, 1.0).astype(np.float32)


__all__ = ["ClearSepSeparationMixin"]
