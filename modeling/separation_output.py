"""The query side of :meth:`ClearSepModel.separate`: negative queries, the residual and the output level.

Negative queries (as CLAPSep's) remove what they name from every positive query's output: each positive mask is
multiplied by ``1 - M_n`` for every negative query's mask ``M_n``, so a sound both queries match is left out. The
residual (as SAM-Audio returns) is the mixture minus the sum of the targets, at the input's rate. ``level_db`` is each
output's energy relative to the mixture: a query for a class that is not in the clip comes out far below the mixture
(a threshold such as -30 dB tells present from absent). Models with a presence head also give
``present_probability``, and ``config.presence_gate`` scales each output by it (see ``ClearSepConfig``). A query for an
ontology class outside the vocabulary is answered by the sum of its nearest vocabulary labels' outputs
(:func:`gather_queries`); it is present when any of them is (:func:`gather_probabilities`).
"""

from __future__ import annotations

import numpy as np
import torch

from .outputs_clearsep import ClearSepSeparationOutput

ENERGY_FLOOR = 1e-12
"""Added to energies before the log, so that silence gives a finite level."""


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


def separation_output(
    separated: np.ndarray, mixture: np.ndarray, residual: bool, present_probability: np.ndarray | None = None
) -> ClearSepSeparationOutput:
    """The output of one waveform: its separated tracks, their levels, the residual when asked for, and the presence
    probabilities when the model has them."""
    return ClearSepSeparationOutput(
        separated_values=separated,
        level_db=level_db(separated, mixture),
        residual=(mixture - separated.sum(axis=0)).astype(np.float32) if residual else None,
        present_probability=present_probability,
    )


def gather_queries(items: torch.Tensor, owners: list[int]) -> torch.Tensor:
    """Per query, the sum of the rows of ``items`` ``(N, T)`` that ``owners`` (one query index per row) assign to it."""
    index = torch.as_tensor(owners, dtype=torch.long, device=items.device)
    return items.new_zeros((max(owners, default=-1) + 1, items.shape[-1])).index_add_(0, index, items)


def gather_probabilities(probabilities: np.ndarray, owners: list[int]) -> np.ndarray:
    """Per query, the probability that any of its items is present, ``1 - prod(1 - p)`` over its rows."""
    absent = np.ones(max(owners, default=-1) + 1, dtype=np.float64)
    np.multiply.at(absent, np.asarray(owners, dtype=np.int64), 1.0 - probabilities.astype(np.float64))
    return (1.0 - absent).astype(np.float32)


def per_waveform(value, count: int, single: bool, name: str) -> list[list]:
    """One list per waveform of a per-waveform argument (``None``: empty lists); a string or an array (one query
    text or audio example) counts as a list of one."""
    if value is None:
        return [[] for _ in range(count)]
    lists = [value] if single else list(value)
    if len(lists) != count:
        raise ValueError(f"got {count} waveforms but {len(lists)} lists of {name}")
    return [[item] if isinstance(item, (str, np.ndarray, torch.Tensor)) else list(item) for item in lists]

