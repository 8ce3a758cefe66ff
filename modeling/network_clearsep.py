"""The building blocks of the ClearSep network: STFT front end, ResUNet encoder, FiLM decoder, query encoder.

:mod:`~clearsep_data.modeling.modeling_clearsep` assembles them into :class:`ClearSepModel` (its docstring gives the
architecture and why); each block here works on ``(batch, [queries,] channels, time, frequency)`` features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from transformers import ClapTextModelWithProjection

from .configuration_clearsep import ClearSepConfig
from .label_hierarchy import LabelHierarchy


def _batched(module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Apply a 4-D module to ``(B, Q, C, N, F)`` features by folding the query axis into the batch."""
    flat = hidden.flatten(0, 1)
    if flat.shape[0] == 1:  # a size-1 batch may carry any stride; oneDNN would copy the activation unless it is dense
        flat = flat.as_strided(flat.shape, (flat.numel(), *flat.stride()[1:]))
    return module(flat).unflatten(0, hidden.shape[:2])


class ClearSepSpectrogram(nn.Module):
    """STFT and inverse STFT with a periodic Hann window, always in float32."""

    def __init__(self, config: ClearSepConfig):
        super().__init__()
        self.n_fft = config.n_fft
        self.hop_length = config.hop_length
        self.window = nn.Buffer(torch.hann_window(config.n_fft), persistent=False)

    def stft(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveforms -> complex ``(B, n_fft // 2 + 1, T // hop + 1)``."""
        with torch.autocast(waveforms.device.type, enabled=False):
            return torch.stft(
                waveforms.float(), self.n_fft, self.hop_length, window=self.window.float(), center=True,
                pad_mode="constant", return_complex=True,
            )  # fmt: skip

    def istft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        """Complex ``(..., F, N)`` -> ``(..., length)`` waveforms."""
        with torch.autocast(spectrum.device.type, enabled=False):
            flat = spectrum.reshape(-1, *spectrum.shape[-2:])
            waveforms = torch.istft(
                flat, self.n_fft, self.hop_length, window=self.window.float(), center=True, length=length
            )
        return waveforms.reshape(*spectrum.shape[:-2], length)


class ClearSepResidualBlock(nn.Module):
    """Pre-activation residual block (BatchNorm, LeakyReLU, 3x3 conv, twice) as in AudioSep's ResUNet."""

    def __init__(self, in_channels: int, out_channels: int, slope: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.activation = nn.LeakyReLU(slope)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        residual = self.conv1(self.activation(self.norm1(hidden)))
        residual = self.conv2(self.activation(self.norm2(residual)))
        return self.shortcut(hidden) + residual


class ClearSepEncoder(nn.Module):
    """Query-independent ResUNet encoder over log-magnitude spectrograms ``(B, 1, N, F)``.

    The stem folds every ``frequency_patch`` neighbouring bins into channels (a space-to-depth patch over frequency,
    as a ViT patch embedding) and projects them to ``channels[0]``: the U-Net then runs at ``F / frequency_patch``
    frequency positions, which divides the cost of the full-resolution levels by that factor while the mask head
    (its inverse, :meth:`ClearSepDecoder.forward`) still predicts one mask value per bin.
    """

    def __init__(self, config: ClearSepConfig):
        super().__init__()
        slope = config.leaky_relu_slope
        channels = config.channels
        self.patch = config.frequency_patch
        # Per-frequency-bin normalisation of the input, as AudioSep's bn0.
        self.input_norm = nn.BatchNorm2d(config.n_fft // 2)
        self.input_conv = nn.Conv2d(self.patch, channels[0], 1)
        self.levels = nn.ModuleList()
        previous = channels[0]
        for width, blocks in zip(channels, config.encoder_blocks, strict=True):
            self.levels.append(
                nn.Sequential(*(ClearSepResidualBlock(previous if i == 0 else width, width, slope) for i in range(blocks)))
            )
            previous = width
        self.pool = nn.AvgPool2d(2)
        self.bottleneck = ClearSepResidualBlock(channels[-1], channels[-1], slope)

    def forward(self, features: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Returns the skip features of every level (fine to coarse) and the bottleneck features."""
        hidden = self.input_norm(features.transpose(1, 3)).transpose(1, 3)
        hidden = _fold_frequency(hidden, self.patch)
        # Channels-last activations: several times faster convolutions on CPU (oneDNN) and with cuDNN tensor cores.
        hidden = self.input_conv(hidden).contiguous(memory_format=torch.channels_last)
        skips = []
        for level in self.levels:
            hidden = level(hidden)
            skips.append(hidden)
            hidden = self.pool(hidden)
        return skips, self.bottleneck(hidden)


def _fold_frequency(features: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, 1, N, F)`` -> ``(B, patch, N, F / patch)``: channel ``p`` at position ``f`` holds bin ``f * patch + p``."""
    return features[:, 0].unflatten(-1, (-1, patch)).permute(0, 3, 1, 2)


def _unfold_frequency(features: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_fold_frequency` on ``(..., patch, N, F / patch)`` -> ``(..., N, F)``."""
    return features.movedim(-3, -1).flatten(-2)


class ClearSepFiLM(nn.Module):
    """Feature-wise linear modulation ``x * (1 + gamma(q)) + beta(q)`` of ``(B, Q, C, N, F)`` features."""

    def __init__(self, query_dim: int, channels: int):
        super().__init__()
        self.projection = nn.Linear(query_dim, 2 * channels)

    def forward(self, hidden: torch.Tensor, queries: torch.Tensor, norm: nn.BatchNorm2d | None = None) -> torch.Tensor:
        """FiLM of ``hidden``, or of ``norm(hidden)`` when a BatchNorm is given.

        In eval mode the BatchNorm is an affine map per channel, so the two are folded into one ``addcmul`` over the
        features (one full-resolution pass less per query, as conv-BN folding at inference).
        """
        gamma, beta = self.projection(queries)[..., None, None].chunk(2, dim=2)
        if norm is None:
            return torch.addcmul(beta, hidden, 1 + gamma)
        if norm.training:
            return torch.addcmul(beta, _batched(norm, hidden), 1 + gamma)
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        offset = torch.addcmul(beta, 1 + gamma, shift[:, None, None])
        return torch.addcmul(offset.to(hidden.dtype), hidden, ((1 + gamma) * scale[:, None, None]).to(hidden.dtype))


class ClearSepDecoderBlock(nn.Module):
    """Upsample, add the (precomputed) skip path, then two FiLM-conditioned pre-activation convolutions."""

    def __init__(self, in_channels: int, out_channels: int, query_dim: int, slope: float, skip_kernel_size: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.skip_norm = nn.BatchNorm2d(out_channels)
        self.skip_conv = nn.Conv2d(out_channels, out_channels, skip_kernel_size, padding=skip_kernel_size // 2, bias=False)
        self.norm1 = nn.BatchNorm2d(out_channels)
        self.film1 = ClearSepFiLM(query_dim, out_channels)
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_channels)
        self.film2 = ClearSepFiLM(query_dim, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.activation = nn.LeakyReLU(slope)

    def project_skip(self, skip: torch.Tensor) -> torch.Tensor:
        """The skip half of the first convolution over ``concat(upsampled, skip)``: once per mixture."""
        return self.skip_conv(self.activation(self.skip_norm(skip)))

    def forward(self, hidden: torch.Tensor, skip_term: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """``(B, Q or 1, C_in, N, F)`` -> ``(B, Q, C_out, 2N, 2F)``."""
        upsampled = _batched(self.upsample, hidden)
        residual = self.activation(self.film1(upsampled, queries, self.norm1))
        residual = _batched(self.conv1, residual) + skip_term[:, None]
        residual = self.activation(self.film2(residual, queries, self.norm2))
        return upsampled + _batched(self.conv2, residual)


class ClearSepDecoder(nn.Module):
    """FiLM-conditioned ResUNet decoder producing one mask-logit map per query."""

    def __init__(self, config: ClearSepConfig):
        super().__init__()
        slope = config.leaky_relu_slope
        channels = config.channels
        inputs = [*channels[1:], channels[-1]]
        self.blocks = nn.ModuleList(
            ClearSepDecoderBlock(inputs[level], channels[level], config.query_dim, slope, config.skip_kernel_size)
            for level in reversed(range(len(channels)))
        )
        self.output_norm = nn.BatchNorm2d(channels[0])
        self.activation = nn.LeakyReLU(slope)
        self.output_conv = nn.Conv2d(channels[0], config.frequency_patch, 1)

    def project_skips(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Query-independent skip contributions, coarse to fine (the order of ``self.blocks``)."""
        return [block.project_skip(skip) for block, skip in zip(self.blocks, reversed(skips), strict=True)]

    def forward(self, bottleneck: torch.Tensor, skip_terms: list[torch.Tensor], queries: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(B, Q, N, F)`` for ``(B, Q, D)`` query embeddings (one per bin: the stem's patches unfolded)."""
        hidden = bottleneck
        for block, skip_term in zip(self.blocks, skip_terms, strict=True):
            hidden = block(hidden, skip_term, queries)
        hidden = _batched(self.output_norm, hidden)
        return _unfold_frequency(_batched(self.output_conv, self.activation(hidden)))


class ClearSepQueryEncoder(nn.Module):
    """Maps label ids to query embeddings: a learned table, or cached CLAP text embeddings of the label names.

    With ``query_encoder="clap_text"`` the CLAP text tower stays frozen (as in AudioSep and CLAPSep): the normalised
    embedding of every label's display name is computed once by :meth:`cache_label_embeddings` and stored in the
    checkpoint, so neither training nor inference runs the text tower (it is not part of the forward graph and never
    receives gradients). A trainable linear layer adapts the CLAP embedding to ``query_dim``.
    """

    def __init__(self, config: ClearSepConfig):
        super().__init__()
        self.kind = config.query_encoder
        if self.kind == "embedding":
            self.embedding = nn.Embedding(config.num_labels, config.query_dim)
            self.depth = label_hierarchy(config).depth()
            self.composition = nn.Buffer(torch.zeros(config.num_labels, config.num_labels), persistent=False)
            """``(L, L)``: each parent label's nearest vocabulary children (see :meth:`LabelHierarchy.composition`);
            derived from ``config.ontology`` (set by ``_init_weights``), not saved."""
            return
        self.text_model = ClapTextModelWithProjection(config.clap_text_config)
        projection_dim = config.clap_text_config.projection_dim
        self.label_embeddings = nn.Buffer(torch.zeros(config.num_labels, projection_dim))
        self.projection = nn.Linear(projection_dim, config.query_dim)

    def forward(self, query_ids: torch.Tensor) -> torch.Tensor:
        if self.kind == "embedding":
            return F.embedding(query_ids, self.label_table())
        if bool((self.label_embeddings.norm(dim=-1) == 0).any()):
            raise RuntimeError(
                "the CLAP label embeddings are not computed: call model.cache_label_embeddings(tokenizer) once "
                "(the result is saved with the model)"
            )
        return self.projection(self.label_embeddings[query_ids])

    def label_table(self) -> torch.Tensor:
        """``(L, query_dim)`` embeddings of the ``"embedding"`` kind: each label's row plus the mean embedding of its
        nearest vocabulary children, recursively (a leaf's embedding is its row)."""
        table = self.embedding.weight
        embeddings = table
        for _ in range(self.depth):
            embeddings = table + self.composition.to(table.dtype) @ embeddings
        return embeddings

    @torch.no_grad()
    def cache_label_embeddings(self, tokenizer, names: Sequence[str], batch_size: int = 64) -> None:
        """Run the text tower over every label name and store the L2-normalised projected embeddings."""
        if self.kind != "clap_text":
            raise ValueError("cache_label_embeddings needs query_encoder='clap_text'")
        device = self.label_embeddings.device
        for start in range(0, len(names), batch_size):
            tokens = tokenizer(list(names[start : start + batch_size]), padding=True, return_tensors="pt")
            tokens = {key: value.to(device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
            embeds = self.text_model(**tokens).text_embeds
            self.label_embeddings[start : start + len(embeds)] = F.normalize(embeds.float(), dim=-1)


class ClearSepPresenceHead(nn.Module):
    """Whether each queried sound is in the mixture: a logit per (clip, query) from the encoder's bottleneck.

    The bottleneck is FiLM-modulated by the query, max-pooled over time and frequency (a sound is present if it
    sounds anywhere) and classified. The head reads the bottleneck and the query embedding detached, so training it
    leaves the separator as it is; pooling before the classifier lets long inputs take the maximum over their chunks.
    """

    def __init__(self, config: ClearSepConfig):
        super().__init__()
        channels = config.channels[-1]
        self.norm = nn.BatchNorm2d(channels)
        self.film = ClearSepFiLM(config.query_dim, channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.activation = nn.LeakyReLU(config.leaky_relu_slope)
        self.classifier = nn.Linear(channels, 1)

    def pool(self, bottleneck: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, Q, C)`` of a ``(B, 1, C, N, F)`` bottleneck and ``(B, Q, D)`` query embeddings."""
        hidden = self.activation(self.film(bottleneck.detach(), queries.detach(), self.norm))
        return self.activation(_batched(self.conv, hidden)).amax(dim=(-2, -1))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Presence logits ``(B, Q)`` of pooled features ``(B, Q, C)``."""
        return self.classifier(pooled.float()).squeeze(-1)


def label_hierarchy(config: ClearSepConfig) -> LabelHierarchy:
    """The hierarchy of ``config``'s vocabulary and ontology."""
    names = [config.id2label[index] for index in range(config.num_labels)]
    return LabelHierarchy(config.label_mids, names, config.ontology)
