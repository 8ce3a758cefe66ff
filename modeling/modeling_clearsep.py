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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.utils import ModelOutput

from .clap_query_encoder import ClapProcessors, ClearSepClapQueryEncoder
from .configuration_clearsep import ClearSepConfig
from .feature_extraction_clearsep import ClearSepFeatureExtractor, fit_length, resample
from .loading import check_loading_info, check_model_folder, is_hub_id
from .losses import separation_loss
from .network_clearsep import (
    ClearSepDecoder,
    ClearSepEncoder,
    ClearSepQueryEncoder,
    ClearSepSpectrogram,
)
from .separation_output import exclude_negatives, per_waveform, separation_output

LOG_FLOOR = 1e-4
"""Added to STFT magnitudes before the log (below the noise floor of 16-bit audio)."""


@dataclass
class ClearSepOutput(ModelOutput):
    r"""
    Output of [`ClearSepModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `target_values` is given):
            The separation loss selected by `config.loss`.
        separated_values (`torch.FloatTensor` of shape `(batch_size, num_queries, sequence_length)`):
            One separated waveform per query, at the input's length.
        masks (`torch.FloatTensor` of shape `(batch_size, num_queries, n_fft // 2 + 1, num_frames)`):
            The magnitude masks (in [0, 1]) applied to the mixture STFT.
    """

    loss: torch.FloatTensor | None = None
    separated_values: torch.FloatTensor | None = None
    masks: torch.FloatTensor | None = None


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
        elif isinstance(module, (ClearSepQueryEncoder, ClearSepClapQueryEncoder)) and module.kind != "embedding":
            init.zeros_(module.label_embeddings)


class ClearSepModel(ClearSepPreTrainedModel):
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
        masks, separated = self.decode(encoding, self.query_encoder(query_ids))
        loss = None
        if target_values is not None:
            loss = separation_loss(
                separated, target_values, input_values, kind=self.config.loss, weights=target_weights
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return tuple(value for value in (loss, separated, masks) if value is not None)
        return ClearSepOutput(loss=loss, separated_values=separated, masks=masks)

    # ----------------------------------------------------------------------------------------------- queries
    def _label_index(self, query: str) -> int | None:
        """The label id of a display name (case-insensitive) or MID; ``None`` for anything else."""
        if not isinstance(query, str):
            return None
        if query in self.config.label_mids:
            return self.config.label_mids.index(query)
        names = {name.casefold(): index for index, name in self.config.id2label.items()}
        return names.get(query.casefold())

    def query_ids(self, queries: str | Sequence[str]) -> torch.LongTensor:
        """Label ids of display names (case-insensitive) or MIDs, e.g. ``["Speech", "/m/0bt9lr"]``."""
        if isinstance(queries, str):
            queries = [queries]
        ids = [self._label_index(query) for query in queries]
        unknown = [query for query, index in zip(queries, ids) if index is None]
        if unknown:
            examples = ", ".join(repr(name) for name in list(self.config.id2label.values())[:5])
            raise ValueError(
                f"unknown queries {unknown}: not a display name or MID of this model's {self.config.num_labels} labels"
                + (f" (e.g. {examples})" if examples else "")
            )
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def query_embeddings(self, queries: str | Sequence[str]) -> torch.Tensor:
        """The ``(Q, query_dim)`` embeddings that condition the decoder on ``queries``.

        Display names and MIDs of the vocabulary use the label table (or, with ``query_encoder="clap"``, the cached
        CLAP embeddings of the names); with ``"clap"`` any other text goes through the CLAP text tower.
        """
        queries = [queries] if isinstance(queries, str) else list(queries)
        if self.config.query_encoder != "clap" or all(self._label_index(query) is not None for query in queries):
            return self.query_encoder(self.query_ids(queries))
        encoder = self.query_encoder
        texts = [query for query in queries if self._label_index(query) is None]
        free = iter(encoder.embed_texts(self.clap_processors.require("text", self.name_or_path), texts))
        clap = [
            encoder.label_embeddings[index, 0] if index is not None else next(free)
            for index in map(self._label_index, queries)
        ]
        return encoder.projection(torch.stack(clap))

    def audio_query_embeddings(self, examples: Sequence, sampling_rate: int) -> torch.Tensor:
        """The ``(N, query_dim)`` embeddings of audio examples (``query_encoder="clap"``: the CLAP audio tower)."""
        if self.config.query_encoder != "clap":
            raise ValueError(f"audio queries need query_encoder='clap', this model's is {self.config.query_encoder!r}")
        extractor = self.clap_processors.require("audio", self.name_or_path)
        return self.query_encoder.projection(self.query_encoder.embed_audio(extractor, examples, sampling_rate))

    def cache_label_embeddings(self, tokenizer) -> None:
        """Compute the CLAP text embedding of every label's display name (``query_encoder="clap_text"`` or ``"clap"``).

        ``tokenizer`` is the text tower's tokenizer (e.g. loaded with ``AutoTokenizer.from_pretrained``); save it next
        to the model with ``tokenizer.save_pretrained(folder)`` to recompute embeddings for a new vocabulary later.
        """
        names = [self.config.id2label[index] for index in range(self.config.num_labels)]
        self.query_encoder.cache_label_embeddings(tokenizer, names)

    # ----------------------------------------------------------------------------------------------- inference
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
        return_tensors: str = "np",
    ):
        """Separate the sounds named by ``queries`` from ``audio``.

        Args:
            audio: a waveform, 1-D ``(T,)`` or ``(channels, T)`` (downmixed), as a numpy array or tensor; or a list of
                such waveforms.
            queries: display names or MIDs for that waveform (a list, or one string); for a list of waveforms, one
                list of queries per waveform. A parent class of the vocabulary (``"Dog"``) asks for all of its
                descendants in the clip (``"Bark"``, ``"Howl"``) together. With ``query_encoder="clap"`` any text
                (``"a dog barking in the rain"``) is a query too.
            sampling_rate: rate of ``audio``; defaults to ``config.sampling_rate``. Other rates are resampled to the
                model's and the outputs back to the input's.
            query_audio: audio examples of the sounds to extract (``query_encoder="clap"``): a list of waveforms at
                ``sampling_rate`` (one list per waveform for a list), embedded by the CLAP audio tower; their outputs
                follow those of ``queries``.
            negative_queries: sounds to keep out of every output (as ``queries``: a list, or one list per waveform):
                each output's mask is multiplied by one minus each negative query's mask.
            return_residual: also return the input minus the sum of the outputs (implies ``return_dict``).
            return_dict: return a :class:`ClearSepSeparationOutput` (outputs, their ``level_db`` relative to the
                input, and the residual when asked for) instead of an array.
            batch_size: how many (clip, chunk) mixture encodings run in one forward pass; each encoding is decoded
                for all of its clip's queries (in one batch on accelerators, one query after the other on CPU).
            chunk_seconds: output length of one chunk of long inputs (default ``config.segment_seconds``). Chunks
                overlap by the network's receptive field, so the result does not depend on the chunking.
            use_bf16: run the network under bfloat16 autocast (the STFTs stay in float32).
            return_tensors: ``"np"`` (default), or ``"pt"`` for float32 ``torch.Tensor`` outputs left on the model's
                device (audio at the model's rate only, without ``return_dict``), e.g. to score them there.

        Returns:
            ``np.ndarray`` ``(Q, T)`` float32 at the input's rate and length, or a :class:`ClearSepSeparationOutput`
            with ``return_dict``/``return_residual``; a list of them for a list of waveforms.
        """
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
            embeddings = [
                torch.cat(
                    ([self.query_embeddings(positive)] if positive else [])
                    + ([self.audio_query_embeddings(example, rate)] if example else [])
                    + ([self.query_embeddings(negative)] if negative else [])
                )
                for positive, example, negative in zip(positives, examples, negatives, strict=True)
            ]
            outputs = self._separate_chunks(
                inputs, embeddings, [len(n) for n in negatives], extractor, batch_size, chunk_seconds, use_bf16
            )
        finally:
            self.train(was_training)
        if return_tensors == "pt":
            return outputs[0] if single else outputs
        results = [
            fit_length(resample(output.cpu().numpy(), self.config.sampling_rate, rate), waveform.shape[-1])
            for output, waveform in zip(outputs, waveforms, strict=True)
        ]
        if return_dict or return_residual:
            mixtures = ClearSepFeatureExtractor(sampling_rate=rate)(waveforms, sampling_rate=rate)["input_values"]
            results = [
                separation_output(result, mixture, return_residual)
                for result, mixture in zip(results, mixtures, strict=True)
            ]
        return results[0] if single else results

    def _separate_chunks(
        self,
        inputs: list[np.ndarray],
        queries: list[torch.Tensor],
        num_negative: list[int],
        extractor: ClearSepFeatureExtractor,
        batch_size: int,
        chunk_seconds: float | None,
        use_bf16: bool,
    ) -> list[torch.Tensor]:
        """Chunked, batched inference over ``extractor``'s chunk plan of ``(Q + N, D)`` query embeddings per clip, the
        last N negative; chunks of equal length and query counts share forward passes. The outputs are overlap-added
        on the model's device and stay there."""
        crossfade = extractor.chunk_quantum
        work = [
            (clip, chunk)
            for clip, waveform in enumerate(inputs)
            for chunk in extractor.chunk_plan(len(waveform), chunk_seconds)
        ]
        outputs = [
            torch.zeros((len(embeddings) - negative, len(waveform)), dtype=torch.float32, device=self.device)
            for embeddings, negative, waveform in zip(queries, num_negative, inputs, strict=True)
        ]
        groups: dict[tuple[int, int, int], list] = {}
        for clip, chunk in work:
            groups.setdefault((chunk[1] - chunk[0], len(queries[clip]), num_negative[clip]), []).append((clip, chunk))
        for (_, _, negative), items in groups.items():
            for start in range(0, len(items), max(1, batch_size)):
                batch = items[start : start + batch_size]
                mixtures = torch.from_numpy(np.stack([inputs[clip][lo:hi] for clip, (lo, hi, _, _) in batch]))
                embeddings = torch.stack([queries[clip] for clip, _ in batch])
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    separated = self._encode_decode(mixtures.to(self.device), embeddings.to(self.device), negative)
                separated = separated.float()
                for (clip, chunk), estimate in zip(batch, separated, strict=True):
                    _add_chunk(outputs[clip], estimate, chunk, crossfade)
        return outputs

    def _encode_decode(self, mixtures: torch.Tensor, queries: torch.Tensor, num_negative: int = 0) -> torch.Tensor:
        """Separated waveforms ``(B, Q, T)`` for ``(B, Q + N, D)`` query embeddings, the last N negative.

        On CPU the queries are decoded one at a time: one query's activations of a 10 s clip fit in the CPU caches,
        several queries' do not (and large blocks are page-faulted in afresh by the allocator on every operation), so a
        loop is several times faster per query there; accelerators get all queries in one batch.
        """
        encoding = self.encode(mixtures)
        step = 1 if self.device.type == "cpu" else queries.shape[1]
        masks = torch.cat(
            [self.decode_masks(encoding, queries[:, start : start + step]) for start in range(0, queries.shape[1], step)],
            dim=1,
        )
        masks = exclude_negatives(masks, num_negative)
        parts = [self.synthesize(encoding, masks[:, start : start + step]) for start in range(0, masks.shape[1], step)]
        return torch.cat(parts, dim=1)


def _add_chunk(output: torch.Tensor, estimate: torch.Tensor, chunk: tuple[int, int, int, int], crossfade: int) -> None:
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


ClearSepModel.register_for_auto_class("AutoModel")  # save_pretrained ships the code, named in config.auto_map

__all__ = ["ClearSepModel", "ClearSepOutput", "ClearSepPreTrainedModel"]
