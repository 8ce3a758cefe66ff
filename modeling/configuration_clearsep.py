"""ClearSep model configuration."""

from __future__ import annotations

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import ClapConfig, ClapTextConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .losses import DEFAULT_LOSS, LOSSES

QUERY_ENCODERS = ("embedding", "clap_text", "clap")
PRESENCE_GATES = ("soft", "hard", "none")

PRESETS: dict[str, dict] = {
    # Trains on two CPU cores in minutes: 16 kHz, 64 ms windows every 20 ms, 8 bins per patch (64 frequency
    # positions), four levels with one encoder block at the two finest, 1x1 skip projections: 23 GFLOP per training
    # step of 8 mixtures x 2 s x 2 queries, a ninth of the same U-Net on 10 ms frames with one position per bin.
    "small": dict(
        sampling_rate=16_000,
        n_fft=1024,
        hop_length=320,
        frequency_patch=8,
        channels=(16, 32, 64, 128),
        encoder_blocks=(1, 1, 2, 2),
        skip_kernel_size=1,
        query_dim=64,
    ),
    # The small preset two levels deeper, for real recordings: six levels put the deepest 3x3 convolutions 64 frames
    # (1.3 s) apart, so the network sees about 4 s of context instead of 1 s (events of real recordings, a drum
    # pattern or a footstep sequence, repeat over seconds); the two added levels work at 1/16 and 1/64 of the frames.
    "medium": dict(
        sampling_rate=16_000,
        n_fft=1024,
        hop_length=320,
        frequency_patch=8,
        channels=(16, 32, 64, 128, 192, 256),
        encoder_blocks=(1, 1, 2, 2, 2, 2),
        skip_kernel_size=1,
        query_dim=64,
    ),
    # The scale of AudioSep's ResUNet30 and of the paper's released code (a CLAPSep fork): 32 kHz,
    # n_fft 1024 / hop 320 (10 ms frames), six levels, FiLM from a 512-d query embedding.
    "audiosep": dict(
        sampling_rate=32_000,
        n_fft=1024,
        hop_length=320,
        frequency_patch=1,
        channels=(32, 64, 128, 256, 384, 384),
        encoder_blocks=2,
        skip_kernel_size=3,
        query_dim=512,
    ),
}


@strict
class ClearSepConfig(PreTrainedConfig):
    r"""
    Configuration of a [`ClearSepModel`]: a query-conditioned source separator (STFT magnitude mask predicted by a
    ResUNet whose decoder is FiLM-conditioned on a sound-event query).

    The defaults are the `"small"` preset, which trains on two CPU cores in minutes; use
    [`ClearSepConfig.from_preset`]`("audiosep")` for the AudioSep-scale model meant for GPUs.

    Args:
        label_mids (`list[str]`, *optional*):
            AudioSet MIDs of the query vocabulary, in the order of `id2label`. When `id2label` is not given, the MIDs
            double as display names.
        id2label (`dict[int, str]`, *optional*):
            Display names of the queries (`{0: "Speech", ...}`); `label2id` is derived from it.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate of the waveforms the model works at; [`ClearSepModel.separate`] resamples other rates.
        n_fft (`int`, *optional*, defaults to 1024):
            STFT size (periodic Hann window of the same length).
        hop_length (`int`, *optional*, defaults to 320):
            STFT hop in samples (20 ms at 16 kHz). The network runs once per frame, so its cost is inversely
            proportional to the hop.
        segment_seconds (`float`, *optional*, defaults to 10.0):
            Length of the training segments; also the default chunk of long-audio inference.
        chunk_context_seconds (`float`, *optional*):
            Audio added on each side of an inference chunk. `None` uses the network's full temporal receptive field,
            which makes chunked inference equal to whole-input inference up to float rounding.
        frequency_patch (`int`, *optional*, defaults to 8):
            Neighbouring frequency bins folded into channels by the stem (space-to-depth over frequency, unfolded
            again by the mask head, which predicts one mask value per bin). The U-Net works on
            `n_fft // 2 / frequency_patch` frequency positions, so this divides the cost of every level; 1 keeps one
            position per bin (AudioSep).
        channels (`list[int]`, *optional*, defaults to `(16, 32, 64, 128)`):
            Channels of the U-Net levels; each level halves time and frequency resolution.
        encoder_blocks (`int` or `list[int]`, *optional*):
            Residual blocks of each encoder level, fine to coarse: one count for all levels, or one per level (the
            bottleneck has one more). The default puts 2 at the two coarsest levels and 1 at the finer ones
            (`[1, 1, 2, 2]` for four levels). The encoder runs once per mixture, the decoder (one block per level) once per query,
            so a heavier encoder makes extra queries cheap; blocks at the coarse levels are cheap and see the most
            context.
        skip_kernel_size (`int`, *optional*, defaults to 1):
            Kernel of the skip-path convolution of each decoder block (1: a channel projection, 3: AudioSep's 3x3).
        query_encoder (`str`, *optional*, defaults to `"embedding"`):
            `"embedding"` (a learned table over the label vocabulary), `"clap_text"` (a frozen CLAP text tower
            applied to the label display names; its embeddings are cached) or `"clap"` (a frozen CLAP model: label
            names cached, and any text or an audio example as a query; see [`ClearSepModel.from_pretrained_clap`]).
        query_dim (`int`, *optional*, defaults to 64):
            Dimension of the query embedding fed to the FiLM layers.
        clap_text_config (`dict` or [`ClapTextConfig`], *optional*):
            The text tower of `query_encoder="clap_text"` (keyword arguments of [`ClapTextConfig`]).
        clap_config (`dict` or [`ClapConfig`], *optional*):
            The CLAP model (text and audio towers) of `query_encoder="clap"`.
        loss (`str`, *optional*, defaults to `"snr_sisnr"`):
            Training objective, the loss `forward` returns with `target_values` (a name of `losses.LOSSES`):
            `"snr_sisnr"` (`-0.9 SNR - 0.1 SI-SNR`, as the paper's released code) or `"l1"` (waveform L1, as AudioSep).
        presence_head (`bool`, *optional*, defaults to `False`):
            Add a presence head: the probability that each queried sound is in the mixture, from the encoder's
            bottleneck and the query (trained with class-balanced BCE on present and absent-class queries; it reads
            the encoder without sending gradients into it, so it cannot cost separation quality). `clearsep-data
            train` turns it on for new models; checkpoints saved without it load without it.
        presence_gate (`str`, *optional*, defaults to `"soft"`):
            How [`ClearSepModel.separate`] applies the presence probability `p` (with `presence_head`): `"soft"`
            leaves outputs with `p >= 0.5` as they are and fades the others to zero with `p` (factor `min(1, 2p)`),
            `"hard"` zeroes outputs with `p < 0.5`, `"none"` only reports `p`.
        ontology (`list[dict]`, *optional*):
            Ontology entries (`id`, `name`, `child_ids`, as AudioSet's `ontology.json`) of the vocabulary's labels and
            every class above them. A query for a class outside the vocabulary then means the sum of its nearest
            vocabulary descendants' separations, and with `query_encoder="embedding"` a parent label's embedding
            builds on its children's (see `label_hierarchy.py`). `clearsep-data train` fills it from its ontology.
        leaky_relu_slope (`float`, *optional*, defaults to 0.01):
            Negative slope of the activations (AudioSep's ResUNet uses 0.01).
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the query embedding table and of the FiLM projections at initialisation.

    Example:

    ```python
    >>> from clearsep_data import ClearSepConfig, ClearSepModel

    >>> config = ClearSepConfig(label_mids=["/m/09x0r", "/m/05tny_"], id2label={0: "Speech", 1: "Bark"})
    >>> model = ClearSepModel(config)
    ```"""

    model_type = "clearsep"
    sub_configs_defaults: ClassVar = {
        "clap_text_config": SubConfigSpec(ClapTextConfig, optional=True),
        "clap_config": SubConfigSpec(ClapConfig, optional=True),
    }

    label_mids: list[str] | None = None
    sampling_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 320
    segment_seconds: float | int = 10.0
    chunk_context_seconds: float | int | None = None
    channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    encoder_blocks: int | list[int] | tuple[int, ...] | None = None
    frequency_patch: int = 8
    skip_kernel_size: int = 1
    query_encoder: str = "embedding"
    query_dim: int = 64
    clap_text_config: dict | PreTrainedConfig | None = None
    clap_config: dict | PreTrainedConfig | None = None
    loss: str = DEFAULT_LOSS
    presence_head: bool = False
    presence_gate: str = "soft"
    ontology: list[dict] | None = None
    leaky_relu_slope: float = 0.01
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if self.id2label is None:
            self.id2label = dict(enumerate(self.label_mids or []))
        self.id2label = {int(index): name for index, name in self.id2label.items()}
        if self.label_mids is None:
            self.label_mids = list(self.id2label.values())
        self.label_mids = list(self.label_mids)
        self.label2id = {name: index for index, name in self.id2label.items()}
        self.channels = list(self.channels)
        if self.encoder_blocks is None:
            self.encoder_blocks = [1] * max(len(self.channels) - 2, 0) + [2] * min(len(self.channels), 2)
        elif isinstance(self.encoder_blocks, int):
            self.encoder_blocks = [self.encoder_blocks] * len(self.channels)
        self.encoder_blocks = list(self.encoder_blocks)
        if self.query_encoder == "clap_text" and self.clap_text_config is None:
            self.clap_text_config = {}
        if self.query_encoder == "clap" and self.clap_config is None:
            self.clap_config = {}
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Checks run by `@strict` validation: consistent vocabulary and sizes."""
        if len(self.label_mids) != len(self.id2label):
            raise ValueError(
                f"label_mids has {len(self.label_mids)} entries but id2label has {len(self.id2label)}: "
                "they must describe the same vocabulary, in the same order"
            )
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ValueError(f"id2label keys must be 0..{len(self.id2label) - 1}, got {sorted(self.id2label)}")
        if self.query_encoder not in QUERY_ENCODERS:
            raise ValueError(f"query_encoder must be one of {QUERY_ENCODERS}, got {self.query_encoder!r}")
        if self.presence_gate not in PRESENCE_GATES:
            raise ValueError(f"presence_gate must be one of {PRESENCE_GATES}, got {self.presence_gate!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        if not self.channels:
            raise ValueError("channels must list at least one level")
        if len(self.encoder_blocks) != len(self.channels) or min(self.encoder_blocks) < 1:
            raise ValueError(
                f"encoder_blocks must be one count >= 1 or one per level of channels ({len(self.channels)}), "
                f"got {self.encoder_blocks}"
            )
        if self.frequency_patch < 1 or (self.n_fft // 2) % (self.frequency_patch * self.frame_quantum) != 0:
            raise ValueError(
                f"n_fft // 2 = {self.n_fft // 2} frequency bins must be divisible by frequency_patch * 2**len(channels)"
                f" = {self.frequency_patch} * {self.frame_quantum}; use fewer levels, a smaller patch or a larger n_fft"
            )
        if self.skip_kernel_size < 1 or self.skip_kernel_size % 2 == 0:
            raise ValueError(f"skip_kernel_size must be a positive odd number, got {self.skip_kernel_size}")
        if not 0 < self.hop_length <= self.n_fft // 2:
            raise ValueError(f"hop_length must be in (0, n_fft / 2], got {self.hop_length}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ClearSepConfig:
        """A configuration from a named preset (`"small"`, `"medium"` or `"audiosep"`), with `overrides` applied."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def frame_quantum(self) -> int:
        """Time and frequency sizes must be multiples of this many frames/bins (the U-Net's total downsampling)."""
        return 2 ** len(self.channels)

    @property
    def sample_quantum(self) -> int:
        """Samples per U-Net time step (``hop_length * frame_quantum``): the grid inference chunks are aligned to."""
        return self.hop_length * self.frame_quantum

    @property
    def receptive_field_frames(self) -> int:
        """Frames on each side of an output frame that can influence it (an upper bound over the U-Net).

        Per level ``l`` (resolution ``2**l``): ``2 * encoder_blocks`` encoder convolutions and one pooling step, then
        the transposed convolution and two 3x3 convolutions of the decoder; plus the two convolutions of the
        bottleneck block at ``2**L``.
        """
        levels = len(self.channels)
        return sum((2 * blocks + 4) * 2**level for level, blocks in enumerate(self.encoder_blocks)) + 2 * 2**levels


ClearSepConfig.register_for_auto_class()  # a saved config.json names this file in auto_map["AutoConfig"]

__all__ = ["ClearSepConfig"]
