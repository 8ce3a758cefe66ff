"""Chunked, batched inference of :meth:`ClearSepModel.separate`: long inputs cut into chunks that overlap by the
network's receptive field (the feature extractor's chunk plan), chunks of equal shape batched together, each chunk's
mixture encoded once and decoded for all of its clip's queries, and the outputs overlap-added with short crossfades.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .feature_extraction_clearsep import ClearSepFeatureExtractor
from .separation_output import exclude_negatives

if TYPE_CHECKING:
    from .modeling_clearsep import ClearSepModel


def separate_chunks(
    model: ClearSepModel,
    inputs: list[np.ndarray],
    queries: list[torch.Tensor],
    num_negative: list[int],
    extractor: ClearSepFeatureExtractor,
    batch_size: int,
    chunk_seconds: float | None,
    use_bf16: bool,
) -> tuple[list[torch.Tensor], list[np.ndarray | None]]:
    """``model``'s chunked, batched inference over ``extractor``'s chunk plan of ``(Q + N, D)`` query embeddings per
    clip, the last N negative; chunks of equal length and query counts share forward passes.

    Returns each clip's outputs ``(Q, T)``, overlap-added on the model's device and left there, and, with the presence head, its pooled head features ``(Q, C)``: the
    maximum over its chunks (a sound is present where any chunk holds it).
    """
    crossfade = extractor.chunk_quantum
    work = [
        (clip, chunk)
        for clip, waveform in enumerate(inputs)
        for chunk in extractor.chunk_plan(len(waveform), chunk_seconds)
    ]
    outputs = [
        torch.zeros((len(embeddings) - negative, len(waveform)), dtype=torch.float32, device=model.device)
        for embeddings, negative, waveform in zip(queries, num_negative, inputs, strict=True)
    ]
    pooled: list[np.ndarray | None] = [None] * len(inputs)
    groups: dict[tuple[int, int, int], list] = {}
    for clip, chunk in work:
        groups.setdefault((chunk[1] - chunk[0], len(queries[clip]), num_negative[clip]), []).append((clip, chunk))
    for (_, _, negative), items in groups.items():
        for start in range(0, len(items), max(1, batch_size)):
            batch = items[start : start + batch_size]
            mixtures = torch.from_numpy(np.stack([inputs[clip][lo:hi] for clip, (lo, hi, _, _) in batch]))
            embeddings = torch.stack([queries[clip] for clip, _ in batch])
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                separated, features = encode_decode(
                    model, mixtures.to(model.device), embeddings.to(model.device), negative
                )
            separated = separated.float()
            for index, ((clip, chunk), estimate) in enumerate(zip(batch, separated, strict=True)):
                add_chunk(outputs[clip], estimate, chunk, crossfade)
                if features is not None:
                    chunk_features = features[index].float().cpu().numpy()
                    pooled[clip] = chunk_features if pooled[clip] is None else np.maximum(pooled[clip], chunk_features)
    return outputs, pooled


def encode_decode(
    model: ClearSepModel, mixtures: torch.Tensor, queries: torch.Tensor, num_negative: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Separated waveforms ``(B, Q, T)`` for ``(B, Q + N, D)`` query embeddings, the last N negative, and the
    presence head's pooled features ``(B, Q, C)`` of the positive queries (``None`` without the head).

    On CPU the queries are decoded one at a time: one query's activations of a 10 s clip fit in the CPU caches,
    several queries' do not (and large blocks are page-faulted in afresh by the allocator on every operation), so a
    loop is several times faster per query there; accelerators get all queries in one batch.
    """
    encoding = model.encode(mixtures)
    step = 1 if model.device.type == "cpu" else queries.shape[1]
    masks = torch.cat(
        [model.decode_masks(encoding, queries[:, start : start + step]) for start in range(0, queries.shape[1], step)],
        dim=1,
    )
    masks = exclude_negatives(masks, num_negative)
    parts = [model.synthesize(encoding, masks[:, start : start + step]) for start in range(0, masks.shape[1], step)]
    positives = queries[:, : queries.shape[1] - num_negative]
    features = None if model.presence_head is None else model.presence_head.pool(encoding.bottleneck, positives)
    return torch.cat(parts, dim=1), features


def add_chunk(output: torch.Tensor, estimate: torch.Tensor, chunk: tuple[int, int, int, int], crossfade: int) -> None:
    """Overlap-add one chunk's estimate ``(Q, in_end - in_start)`` into ``output`` ``(Q, T)``.

    The chunk owns ``[out_start, out_end)``; at each inner boundary ``b`` it fades linearly over
    ``[b - crossfade / 2, b + crossfade / 2)`` with weights that sum to one with its neighbour's.
    """
    in_start, in_end, out_start, out_end = chunk
    length = output.shape[-1]
    half = crossfade // 2
    low = out_start - half if out_start > 0 else 0
    high = out_end + half if out_end < length else length
    low, high = max(low, in_start), min(high, in_end)
    positions = np.arange(low, high, dtype=np.float64) + 0.5
    weights = np.ones(high - low)
    if out_start > 0:
        weights *= np.clip((positions - (out_start - half)) / crossfade, 0.0, 1.0)
    if out_end < length:
        weights *= 1.0 - np.clip((positions - (out_end - half)) / crossfade, 0.0, 1.0)
    weights = torch.from_numpy(weights.astype(np.float32)).to(output.device)
    output[:, low:high] += estimate[:, low - in_start : high - in_start] * weights


__all__ = ["add_chunk", "encode_decode", "separate_chunks"]
