"""The output dataclasses of :class:`ClearSepModel`: its ``forward``, the query-independent encoding of a batch of
mixtures, and what :meth:`ClearSepModel.separate` returns with ``return_dict=True``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers.utils import ModelOutput


@dataclass
class ClearSepOutput(ModelOutput):
    r"""
    Output of [`ClearSepModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `target_values` is given):
            The separation loss selected by `config.loss` (plus the presence head's balanced BCE when it has one).
        separated_values (`torch.FloatTensor` of shape `(batch_size, num_queries, sequence_length)`):
            One separated waveform per query, at the input's length.
        masks (`torch.FloatTensor` of shape `(batch_size, num_queries, n_fft // 2 + 1, num_frames)`):
            The magnitude masks (in [0, 1]) applied to the mixture STFT.
        presence_logits (`torch.FloatTensor` of shape `(batch_size, num_queries)`, *optional*):
            With `config.presence_head`: the logit of each queried sound being in the mixture (the outputs here are
            not gated by it; [`ClearSepModel.separate`] applies `config.presence_gate`).
    """

    loss: torch.FloatTensor | None = None
    separated_values: torch.FloatTensor | None = None
    masks: torch.FloatTensor | None = None
    presence_logits: torch.FloatTensor | None = None


@dataclass
class ClearSepEncoding:
    """The query-independent part of a forward pass over a batch of mixtures."""

    spectrum: torch.Tensor
    """Complex mixture STFT ``(B, F, N)``."""
    bottleneck: torch.Tensor
    """Coarsest features ``(B, 1, C, N', F')`` (a query axis of size 1, broadcast by the decoder)."""
    skip_terms: list[torch.Tensor]
    """Each decoder block's skip-path contribution ``(B, C, N_l, F_l)``, coarse to fine."""
    length: int
    """Samples of the input waveforms."""



@dataclass
class ClearSepSeparationOutput(ModelOutput):
    r"""
    What [`ClearSepModel.separate`] returns for one waveform with `return_dict=True` or `return_residual=True`.

    Args:
        separated_values (`np.ndarray` of shape `(num_queries, sequence_length)`):
            One separated waveform per positive query, at the input's rate and length.
        level_db (`np.ndarray` of shape `(num_queries,)`):
            Energy of each separated waveform relative to the (downmixed) input, in dB; a query for a sound the
            clip does not hold comes out far below 0 dB, so thresholding it tells which queried sounds are present.
        residual (`np.ndarray` of shape `(sequence_length,)`, *optional*, returned with `return_residual=True`):
            The input minus the sum of the separated waveforms: everything the queries did not take.
        present_probability (`np.ndarray` of shape `(num_queries,)`, *optional*, from models with a presence head):
            The probability that each queried sound is in the input (threshold at 0.5 to tell present from
            absent); `None` for models without the head (`config.presence_head=False`, e.g. checkpoints saved before
            it existed).
    """

    separated_values: np.ndarray | None = None
    level_db: np.ndarray | None = None
    residual: np.ndarray | None = None
    present_probability: np.ndarray | None = None


__all__ = ["ClearSepEncoding", "ClearSepOutput", "ClearSepSeparationOutput"]
