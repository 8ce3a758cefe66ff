"""Free-text and audio queries through CLAP (``query_encoder="clap"``), as AudioSep (text) and CLAPSep (text or audio).

A frozen ``transformers`` :class:`~transformers.ClapModel` maps any text (``"a dog barking in the rain"``) or an audio
example to a unit-norm embedding in its joint space; a trainable linear layer adapts that embedding to the decoder's
``query_dim``. The embeddings of the vocabulary's display names (and of each name in :data:`CAPTION_TEMPLATES`) are
computed once and stored in the checkpoint, so a label query costs a table look-up; training draws one of a label's
variants per query, inference uses the plain name. The CLAP tokenizer and feature extractor live in the model folder's
``clap/`` subfolder (:class:`ClapProcessors`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

from .feature_extraction_clearsep import downmix, resample

CAPTION_TEMPLATES = ("the sound of {}", "{} can be heard", "a recording of {}", "{} in the background")
"""Simple captions trained next to the plain label names (variant 0), so that free text lands near its label."""
CLAP_SUBFOLDER = "clap"
"""Where a model folder keeps the CLAP tokenizer and feature extractor."""


class ClearSepClapQueryEncoder(nn.Module):
    """Query embeddings from a frozen CLAP model: cached for the vocabulary, computed for free text and audio."""

    kind = "clap"

    def __init__(self, config):
        super().__init__()
        self.clap = ClapModel(config.clap_config).eval()  # frozen, always in eval mode (see train)
        self.clap.requires_grad_(False)
        projection_dim = config.clap_config.projection_dim
        self.label_embeddings = nn.Buffer(torch.zeros(config.num_labels, 1 + len(CAPTION_TEMPLATES), projection_dim))
        """``(labels, variants, projection_dim)``: the L2-normalised CLAP text embedding of each label's name, then
        of each caption template around it."""
        self.projection = nn.Linear(projection_dim, config.query_dim)

    def train(self, mode: bool = True) -> ClearSepClapQueryEncoder:
        super().train(mode)
        self.clap.eval()  # frozen: no dropout, whatever the model's mode
        return self

    def forward(self, query_ids: torch.Tensor) -> torch.Tensor:
        """Query embeddings of label ids: a random variant per query in training, the plain name otherwise."""
        if bool((self.label_embeddings[:, 0].norm(dim=-1) == 0).any()):
            raise RuntimeError(
                "the CLAP label embeddings are not computed: call model.cache_label_embeddings(tokenizer) once "
                "(ClearSepModel.from_pretrained_clap does)"
            )
        variants = self.label_embeddings[query_ids]  # (..., V, P)
        if self.training:
            pick = torch.randint(variants.shape[-2], query_ids.shape, device=query_ids.device)
            chosen = variants.gather(-2, pick[..., None, None].expand(*query_ids.shape, 1, variants.shape[-1]))[..., 0, :]
        else:
            chosen = variants[..., 0, :]
        return self.projection(chosen)

    @torch.no_grad()
    def embed_texts(self, tokenizer, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """L2-normalised CLAP embeddings ``(N, projection_dim)`` of ``texts``."""
        device = self.label_embeddings.device
        parts = []
        for start in range(0, len(texts), batch_size):
            tokens = tokenizer(list(texts[start : start + batch_size]), padding=True, return_tensors="pt")
            tokens = {key: value.to(device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")}
            parts.append(self.clap.get_text_features(**tokens).pooler_output.float())
        return torch.cat(parts) if parts else torch.zeros(0, self.label_embeddings.shape[-1], device=device)

    @torch.no_grad()
    def embed_audio(self, feature_extractor, examples: Sequence, sampling_rate: int) -> torch.Tensor:
        """L2-normalised CLAP embeddings ``(N, projection_dim)`` of audio examples (mono or ``(channels, T)``)."""
        device = self.label_embeddings.device
        waveforms = [
            resample(downmix(np.asarray(example, dtype=np.float32)), sampling_rate, feature_extractor.sampling_rate)
            for example in examples
        ]
        features = feature_extractor(waveforms, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
        inputs = {key: value.to(device) for key, value in features.items() if key in ("input_features", "is_longer")}
        return self.clap.get_audio_features(**inputs).pooler_output.float()

    def cache_label_embeddings(self, tokenizer, names: Sequence[str]) -> None:
        """Embed every label name and its caption templates into :attr:`label_embeddings`."""
        texts = [template.format(name) for name in names for template in ("{}", *CAPTION_TEMPLATES)]
        embeddings = self.embed_texts(tokenizer, texts)
        self.label_embeddings.copy_(embeddings.reshape(self.label_embeddings.shape))


class ClapProcessors:
    """The CLAP tokenizer and feature extractor of a model: set, loaded from a folder or Hub id, or saved."""

    def __init__(self, tokenizer=None, feature_extractor=None):
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, subfolder: str = "", revision: str | None = None) -> ClapProcessors:
        """Load both from a CLAP checkpoint (``laion/clap-htsat-unfused``) or a ClearSep folder's ``clap/``."""
        return cls(
            AutoTokenizer.from_pretrained(source, subfolder=subfolder, revision=revision),
            ClapFeatureExtractor.from_pretrained(source, subfolder=subfolder, revision=revision),
        )

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        target = Path(folder, CLAP_SUBFOLDER)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(target)
        if self.feature_extractor is not None:
            self.feature_extractor.save_pretrained(target)

    def require(self, what: str, source: str | os.PathLike | None):
        """The tokenizer (``what="text"``) or feature extractor (``"audio"``), loaded from ``source``'s ``clap/``
        on first use; a ``ValueError`` says how to provide it when there is none."""
        name = "tokenizer" if what == "text" else "feature_extractor"
        if getattr(self, name) is None and source:
            try:
                loaded = ClapProcessors.from_pretrained(source, subfolder=CLAP_SUBFOLDER)
            except (OSError, ValueError):
                loaded = None
            if loaded is not None:
                self.tokenizer = self.tokenizer or loaded.tokenizer
                self.feature_extractor = self.feature_extractor or loaded.feature_extractor
        if getattr(self, name) is None:
            raise ValueError(
                f"{what} queries need the CLAP {name.replace('_', ' ')}: build the model with "
                f"ClearSepModel.from_pretrained_clap, or set model.clap_processors = ClapProcessors.from_pretrained(CLAP)"
            )
        return getattr(self, name)


__all__ = ["CAPTION_TEMPLATES", "ClapProcessors", "ClearSepClapQueryEncoder"]
