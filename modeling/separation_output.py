"""The query side of :meth:`ClearSepModel.separate`: negative queries, the residual and the output level.

Negative queries (as CLAPSep's) remove what they name from every positive query's output: each positive mask is
multiplied by ``1 - M_n`` for every negative query's mask ``M_n``, so a sound both queries match is left out. The
residual (as SAM-Audio returns) is the mixture minus the sum of the targets, at the input's rate. ``level_db`` is each
output's energy relative to the mixture: a query for a class that is not in the clip comes out far below the mixture
(a threshold such as -30 dB tells present from absent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers.utils import ModelOutput

ENERGY_FLOOR = 1e-12
"""Added to energies before the log, so that silence gives a finite level."""


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
    """

    separated_values: np.ndarray | None = None
    level_db: np.ndarray | None = None
    residual: np.ndarray | None = None


def exclude_negatives(masks: torch.Tensor, num_negative: int) -> torch.Tensor:
    """Positive masks ``(B, Q, F, N)`` with what the last ``num_negative`` queries' masks cover taken out."""
    if num_negative == 0:
        return masks
    positives, negatives = masks[:, :-num_negative], masks[:, -num_negative:]
    return positives * torch.prod(1.0 - negatives, dim=1, keepdim=True)


def level_db(separated: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Energy of each row of ``separated`` ``(Q, T)`` relative to ``mixture`` ``(T,)``, in dB."""
    energy = np.sum(np.square(separated, dtype=np.float64), axis=-1)
    reference = float(np.sum(np.square(mixture, dtype=np.float64)))
    return (10 * np.log10((energy + ENERGY_FLOOR) / (reference + ENERGY_FLOOR))).astype(np.float32)


def separation_output(separated: np.ndarray, mixture: np.ndarray, residual: bool) -> ClearSepSeparationOutput:
    """The output of one waveform: its separated tracks, their levels, and the residual when asked for."""
    return ClearSepSeparationOutput(
        separated_values=separated,
        level_db=level_db(separated, mixture),
        residual=(mixture - separated.sum(axis=0)).astype(np.float32) if residual else None,
    )


def per_waveform(value, count: int, single: bool, name: str) -> list[list]:
    """One list per waveform of a per-waveform argument (``None``: empty lists); a string or an array (one query
    text or audio example) counts as a list of one."""
    if value is None:
        return [[] for _ in range(count)]
    lists = [value] if single else list(value)
    if len(lists) != count:
        raise ValueError(f"got {count} waveforms but {len(lists)} lists of {name}")
    return [[item] if isinstance(item, (str, np.ndarray, torch.Tensor)) else list(item) for item in lists]


__all__ = ["ClearSepSeparationOutput"]
