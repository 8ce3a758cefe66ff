"""PyTorch ClearSep model: a query-conditioned universal sound separator.

The architecture follows the paper's released code (a CLAPSep fork: STFT front end, FiLM-conditioned mask decoder,
magnitude mask with the mixture phase) and AudioSep's ResUNet30 (a residual U-Net over (time, frequency) whose
decoder is FiLM-conditioned by a query embedding):

    waveform --STFT--> log|X| --fold P bins into channels--> ResUNet encoder (once per mixture) --> skips, bottleneck
    query ids --embedding or cached CLAP text embedding--> q    (free text, audio examples: CLAP, then a projection)
    (skips, bottleneck, q) --FiLM decoder (once per query)--> P mask logits per position --unfold--> sigmoid mask M
    separated = iSTFT(M * X)    (the mixture's phase)

The frequency patch (``config.frequency_patch``, a space-to-depth stem as a ViT's patch embedding, but over frequency
only) is what makes the small preset cheap: with 8 bins per position and 20 ms hops its full-resolution level has
16x fewer positions than one position per bin every 10 ms, while time keeps its full resolution and the mask its
per-bin resolution.

Why a magnitude mask with the mixture phase, not a complex mask: it is what the released code trains, and on
natural mixtures (where references come from the model itself, not from clean stems) a bounded mask in [0, 1] can
only remove energy, so it never invents content the mixture does not contain and stays stable when several queries
are extracted from one clip; complex masks help mostly at high SNRs with clean phase-aligned references, at the cost
of an unbounded output and harder training. For the sparse, mostly non-overlapping time-frequency regions of sound
events the mixture's phase costs little: the ideal ratio mask with it scores within 0.5 dB SI-SDRi whether frames are
10 or 20 ms apart (~21.5 dB on the demo corpus's held-out clips).

Multi-query cost: everything that does not depend on the query runs once per mixture: the STFT, the encoder, the
bottleneck, the first upsampling and the skip-path convolution of every decoder block (a convolution over
``concat(upsampled, skip)`` is a sum of one over each part, so the skip part is computed once and broadcast over the
queries). Only the FiLM-conditioned convolutions and the mask run per query.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save

from .clap_query_encoder import ClapProcessors, ClearSepClapQueryEncoder
from .configuration_clearsep import ClearSepConfig
from .feature_extraction_clearsep import ClearSepFeatureExtractor
from .loading import check_loading_info, check_model_folder, is_hub_id
from .losses import presence_loss, separation_loss, silent_targets
from .network_clearsep import (
    ClearSepDecoder,
    ClearSepEncoder,
    ClearSepPresenceHead,
    ClearSepQueryEncoder,
    ClearSepSpectrogram,
    label_hierarchy,
)
from .outputs_clearsep import ClearSepEncoding, ClearSepOutput
from .queries_clearsep import ClearSepQueryMixin
from .separation_clearsep import ClearSepSeparationMixin

LOG_FLOOR = 1e-4
"""Added to STFT magnitudes before the log (below the noise floor of 16-bit audio)."""


class ClearSepPreTrainedModel(PreTrainedModel):
    """Weight initialisation and the transformers plumbing (`save_pretrained`, `from_pretrained`, `push_to_hub`)."""

    config_class = ClearSepConfig
    config: ClearSepConfig
    base_model_prefix = "clearsep"
    main_input_name = "input_values"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """transformers' ``from_pretrained``, strict: safetensors weights only, every tensor present with its shape.

        A local folder that does not exist, lacks ``config.json`` or ``model.safetensors``, holds a damaged weights
        file or weights that do not match its config raises :class:`~clearsep_data.modeling.ClearSepLoadError` (a
        ``ValueError``) before anything is loaded; so does a Hub model whose weights do not match its config
        (``ignore_mismatched_sizes`` has no effect). The weights are then copied out of the memory-mapped file, see
        :meth:`_own_weights`.
        """
        source = pretrained_model_name_or_path
        if not is_hub_id(source):
            check_model_folder(Path(source, kwargs.get("subfolder", "")), cls, kwargs.get("config"))
        with_info = kwargs.pop("output_loading_info", False)
        strict = {"use_safetensors": True, "ignore_mismatched_sizes": True, "output_loading_info": True}
        model, info = super().from_pretrained(source, *model_args, **{**kwargs, **strict})
        check_loading_info(source, info)
        model._own_weights()
        return (model, info) if with_info else model

    @property
    def feature_extractor(self) -> ClearSepFeatureExtractor:
        """The audio preparation of this model's config (rate, downmix, chunk plan); saved with the model."""
        return ClearSepFeatureExtractor.from_model_config(self.config)

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs) -> None:
        """transformers' ``save_pretrained``, then :meth:`save_code`: the folder loads without ClearSep installed."""
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            self.save_code(save_directory)

    def save_code(self, save_directory: str | os.PathLike) -> None:
        """Write all of a model folder but the weights: the code, ``config.json`` naming it, the feature extractor.

        The code is this file and every file it imports relatively (the config, the network, the feature extractor
        and the ``audio-source-separation`` pipeline); ``config.json`` names the classes in ``auto_map`` and the
        pipeline in ``custom_pipelines``, and ``preprocessor_config.json`` holds the feature extractor (with its own
        ``auto_map``). ``AutoModel``, ``AutoFeatureExtractor`` and ``pipeline`` then load the folder, or a Hub
        repository of it, with ``trust_remote_code=True`` and transformers alone. A model on the meta device will do.
        """
        from .pipeline_clearsep import AudioSourceSeparationPipeline

        Path(save_directory).mkdir(parents=True, exist_ok=True)
        self.config.custom_pipelines = AudioSourceSeparationPipeline.custom_pipelines()
        custom_object_save(self, save_directory, config=self.config)
        self.config.save_pretrained(save_directory)
        self.feature_extractor.save_pretrained(save_directory)

    @torch.no_grad()
    def _own_weights(self) -> None:
        """Copy every parameter and buffer into fresh memory that torch allocates (64-byte aligned).

        transformers leaves CPU weights inside the memory-mapped safetensors file, at offsets only 8-byte aligned, and
        MKL's batch-1 SGEMM takes another path for float32 weights at element offsets 1-3 mod 4 than at 0 (on AMD EPYC
        it gives other bits), so without the copy a loaded model would not compute exactly as a copy of it
        (``.to(device)``, ``deepcopy``) does.
        """
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            tensor.data = tensor.data.clone()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            init.xavier_uniform_(module.weight)  # as AudioSep's init_layer
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0)  # unit-scale queries, so FiLM sees them from step one
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, ClearSepSpectrogram):
            init.copy_(module.window, torch.hann_window(module.n_fft))
        elif isinstance(module, ClearSepQueryEncoder) and module.kind == "embedding":
            composition = label_hierarchy(self.config).composition()
            init.copy_(module.composition, composition)
            leaves = (composition.sum(dim=1) == 0).to(module.embedding.weight)
            init.copy_(module.embedding.weight, module.embedding.weight * leaves[:, None])  # parents start as children
        elif isinstance(module, (ClearSepQueryEncoder, ClearSepClapQueryEncoder)):
            init.zeros_(module.label_embeddings)


class ClearSepModel(ClearSepQueryMixin, ClearSepSeparationMixin, ClearSepPreTrainedModel):
    """ClearSep: separates the sound events named by queries from a mixture.

    Example:

    ```python
    >>> from clearsep_data import ClearSepConfig, ClearSepModel

    >>> names = {0: "Speech", 1: "Bark"}
    >>> config = ClearSepConfig.from_preset("small", label_mids=["/m/09x0r", "/m/05tny_"], id2label=names)
    >>> model = ClearSepModel(config)
    >>> tracks = model.separate(waveform, ["Speech", "Bark"], sampling_rate=44100)  # (2, len(waveform))
    ```
    """

    def __init__(self, config: ClearSepConfig):
        super().__init__(config)
        self.spectrogram = ClearSepSpectrogram(config)
        self.encoder = ClearSepEncoder(config)
        self.query_encoder = (ClearSepClapQueryEncoder if config.query_encoder == "clap" else ClearSepQueryEncoder)(config)
        self.decoder = ClearSepDecoder(config)
        self.presence_head = ClearSepPresenceHead(config) if config.presence_head else None
        self.label_hierarchy = label_hierarchy(config)
        """The vocabulary's place in ``config.ontology``: what a query for an ontology class stands for."""
        self.clap_processors = ClapProcessors()
        """The CLAP tokenizer and feature extractor of ``query_encoder="clap"`` (free-text and audio queries), loaded
        from the model folder's ``clap/`` on first use and saved there by :meth:`save_pretrained`."""
        self.post_init()

    @classmethod
    def from_pretrained_clap(
        cls, clap_name_or_path: str | os.PathLike, config: ClearSepConfig, *, revision: str | None = None, **kwargs
    ) -> ClearSepModel:
        """A new model (``config`` with ``query_encoder="clap"``) whose query encoder is a pretrained CLAP model.

        ``clap_name_or_path`` is a Hub id (``"laion/clap-htsat-unfused"``) or a folder holding a ``ClapModel`` with
        its tokenizer and feature extractor; ``kwargs`` go to ``ClapModel.from_pretrained``. The embeddings of the
        vocabulary's names (and caption templates) are computed here.
        """
        from transformers import ClapModel

        clap = ClapModel.from_pretrained(clap_name_or_path, revision=revision, **kwargs)
        config = ClearSepConfig.from_dict({**config.to_dict(), "query_encoder": "clap", "clap_config": clap.config.to_dict()})
        model = cls(config)
        model.query_encoder.clap.load_state_dict(clap.state_dict())
        model.clap_processors = ClapProcessors.from_pretrained(clap_name_or_path, revision=revision)
        model.cache_label_embeddings(model.clap_processors.tokenizer)
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs) -> None:
        """As the base class's, plus the CLAP tokenizer and feature extractor in ``clap/`` when set."""
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if is_main_process:
            self.clap_processors.save_pretrained(save_directory)

    # ----------------------------------------------------------------------------------------------- forward
    def encode(self, input_values: torch.Tensor) -> ClearSepEncoding:
        """The query-independent pass over ``(B, T)`` mixtures."""
        spectrum = self.spectrogram.stft(input_values)
        magnitude = spectrum[:, :-1].abs().transpose(1, 2)  # (B, N, F - 1): the Nyquist bin is left out
        quantum = self.config.frame_quantum
        magnitude = F.pad(magnitude, (0, 0, 0, -magnitude.shape[1] % quantum))
        features = torch.log(magnitude + LOG_FLOOR)[:, None].to(self.dtype)
        skips, bottleneck = self.encoder(features)
        return ClearSepEncoding(
            spectrum=spectrum,
            bottleneck=bottleneck[:, None],
            skip_terms=self.decoder.project_skips(skips),
            length=input_values.shape[-1],
        )

    def decode(self, encoding: ClearSepEncoding, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, Q, F, N)`` and separated waveforms ``(B, Q, T)`` for ``(B, Q, D)`` query embeddings."""
        masks = self.decode_masks(encoding, queries)
        return masks, self.synthesize(encoding, masks)

    def decode_masks(self, encoding: ClearSepEncoding, queries: torch.Tensor) -> torch.Tensor:
        """Magnitude masks ``(B, Q, F, N)`` in [0, 1] for ``(B, Q, D)`` query embeddings."""
        logits = self.decoder(encoding.bottleneck, encoding.skip_terms, queries)
        num_frames = encoding.spectrum.shape[-1]
        masks = torch.sigmoid(logits[:, :, :num_frames].float())
        return torch.cat([masks, masks[..., -1:]], dim=-1).transpose(-1, -2)  # Nyquist bin: its neighbour's mask

    def synthesize(self, encoding: ClearSepEncoding, masks: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, Q, T)``: the masks applied to the mixture's STFT (its phase kept), inverted."""
        return self.spectrogram.istft(masks * encoding.spectrum[:, None], encoding.length)

    def forward(
        self,
        input_values: torch.Tensor,
        query_ids: torch.Tensor,
        target_values: torch.Tensor | None = None,
        target_weights: torch.Tensor | None = None,
        presence_labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> ClearSepOutput | tuple:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, sequence_length)`):
                Mono mixtures at `config.sampling_rate`.
            query_ids (`torch.LongTensor` of shape `(batch_size, num_queries)`):
                Label ids of the sounds to extract from each mixture (see [`ClearSepModel.query_ids`]).
            target_values (`torch.FloatTensor` of shape `(batch_size, num_queries, sequence_length)`, *optional*):
                Reference waveforms; all-zero for queries absent from the mixture. Enables `loss`.
            target_weights (`torch.FloatTensor` of shape `(batch_size, num_queries)`, *optional*):
                Per-item loss weights (e.g. the quality weights of engine-made tracks); 0 for padding queries.
            presence_labels (`torch.LongTensor` of shape `(batch_size, num_labels)`, *optional*):
                With `target_values` and a presence head: which vocabulary labels each mixture holds (1), does not
                hold (0) or may hold (-1, left out); the head is then trained on every label of every mixture, not
                only on the queries (whose presence is otherwise read from their targets: silent means absent).
            return_dict (`bool`, *optional*):
                Return a [`ClearSepOutput`] (default) or a tuple.
        """
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        if query_ids.ndim != 2 or query_ids.shape[0] != input_values.shape[0]:
            raise ValueError(
                f"query_ids must be (batch, queries) with batch = {input_values.shape[0]}, "
                f"got shape {tuple(query_ids.shape)}"
            )
        encoding = self.encode(input_values)
        queries = self.query_encoder(query_ids)
        masks, separated = self.decode(encoding, queries)
        logits = None
        if self.presence_head is not None:
            logits = self.presence_head(self.presence_head.pool(encoding.bottleneck, queries))
        loss = None
        if target_values is not None:
            loss = separation_loss(
                separated, target_values, input_values, kind=self.config.loss, weights=target_weights
            )
            if logits is not None:
                loss = loss + self._presence_loss(
                    encoding, logits, input_values, target_values, target_weights, presence_labels
                )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(value for value in (loss, separated, masks, logits) if value is not None)
        return ClearSepOutput(loss=loss, separated_values=separated, masks=masks, presence_logits=logits)


    def _presence_loss(
        self,
        encoding: ClearSepEncoding,
        logits: torch.Tensor,
        input_values: torch.Tensor,
        target_values: torch.Tensor,
        target_weights: torch.Tensor | None,
        presence_labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """The presence head's loss: over every label of every mixture with ``presence_labels``, else over the
        queries' ``logits`` (a query is absent where its target is silent)."""
        if presence_labels is None:
            return presence_loss(logits, ~silent_targets(target_values, input_values), target_weights)
        labels = torch.arange(self.config.num_labels, device=presence_labels.device)
        queries = self.query_encoder(labels.expand(presence_labels.shape[0], -1))
        all_logits = self.presence_head(self.presence_head.pool(encoding.bottleneck, queries))
        return presence_loss(all_logits, presence_labels == 1, (presence_labels >= 0).float())

ClearSepModel.register_for_auto_class("AutoModel")  # save_pretrained ships the code, named in config.auto_map

__all__ = ["ClearSepModel", "ClearSepOutput", "ClearSepPreTrainedModel"]
