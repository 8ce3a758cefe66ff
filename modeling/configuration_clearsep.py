"""ClearSep model configuration."""

from __future__ import annotations

from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import ClapTextConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

QUERY_ENCODERS = ("embedding", "clap_text")
LOSSES = ("snr_sisnr", "l1")

PRESETS: dict[str, dict] = {
    # Trains on two CPU cores in minutes: 16 kHz, 32 ms windows, four resolution levels.
    "small": dict(
        sampling_rate=16_000,
        n_fft=512,
        hop_length=160,
        channels=(16, 32, 64, 128),
        query_dim=64,
    ),
    # The scale of AudioSep's ResUNet30 and of the paper's released code (a CLAPSep fork): 32 kHz,
    # n_fft 1024 / hop 320 (10 ms frames), six levels, FiLM from a 512-d query embedding.
    "audiosep": dict(
        sampling_rate=32_000,
        n_fft=1024,
        hop_length=320,
        channels=(32, 64, 128, 256, 384, 384),
        query_dim=512,
    ),
}


@strict
class ClearSepConfig(PreTrainedConfig):
    r"""
    Configuration of a [`ClearSepModel`]: a query-conditioned source separator (STFT magnitude mask predicted by a
    ResUNet whose decoder is FiLM-conditioned on a sound-event query).

    The defaults are the `"small"` preset; use [`ClearSepConfig.from_preset`] for the AudioSep-scale model.

    Args:
        label_mids (`list[str]`, *optional*):
            AudioSet MIDs of the query vocabulary, in the order of `id2label`. When `id2label` is not given, the MIDs
            double as display names.
        id2label (`dict[int, str]`, *optional*):
            Display names of the queries (`{0: "Speech", ...}`); `label2id` is derived from it.
        sampling_rate (`int`, *optional*, defaults to 16000):
            Rate of the waveforms the model works at; [`ClearSepModel.separate`] resamples other rates.
        n_fft (`int`, *optional*, defaults to 512):
            STFT size (periodic Hann window of the same length).
        hop_length (`int`, *optional*, defaults to 160):
            STFT hop in samples.
        segment_seconds (`float`, *optional*, defaults to 10.0):
            Length of the training segments; also the default chunk of long-audio inference.
        chunk_context_seconds (`float`, *optional*):
            Audio added on each side of an inference chunk. `None` uses the network's full temporal receptive field,
            which makes chunked inference equal to whole-input inference up to float rounding.
        channels (`list[int]`, *optional*, defaults to `(16, 32, 64, 128)`):
            Channels of the U-Net levels; each level halves time and frequency resolution.
        encoder_blocks (`int`, *optional*, defaults to 2):
            Residual blocks per encoder level (the bottleneck has one). The encoder runs once per mixture, the decoder
            (one block per level) once per query, so a heavier encoder makes extra queries cheap.
        query_encoder (`str`, *optional*, defaults to `"embedding"`):
            `"embedding"` (a learned table over the label vocabulary) or `"clap_text"` (a frozen CLAP text tower
            applied to the label display names; its embeddings are cached).
        query_dim (`int`, *optional*, defaults to 64):
            Dimension of the query embedding fed to the FiLM layers.
        clap_text_config (`dict` or [`ClapTextConfig`], *optional*):
            The text tower of `query_encoder="clap_text"` (keyword arguments of [`ClapTextConfig`]).
        loss (`str`, *optional*, defaults to `"snr_sisnr"`):
            Training objective: `"snr_sisnr"` (`-0.9 SNR - 0.1 SI-SNR`, as the paper's released code) or `"l1"`
            (waveform L1, as AudioSep).
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
    sub_configs_defaults: ClassVar = {"clap_text_config": SubConfigSpec(ClapTextConfig, optional=True)}

    label_mids: list[str] | None = None
    sampling_rate: int = 16_000
    n_fft: int = 512
    hop_length: int = 160
    segment_seconds: float | int = 10.0
    chunk_context_seconds: float | int | None = None
    channels: list[int] | tuple[int, ...] = (16, 32, 64, 128)
    encoder_blocks: int = 2
    query_encoder: str = "embedding"
    query_dim: int = 64
    clap_text_config: dict | PreTrainedConfig | None = None
    loss: str = "snr_sisnr"
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
        if self.query_encoder == "clap_text" and self.clap_text_config is None:
            self.clap_text_config = {}
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
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not self.channels:
            raise ValueError("channels must list at least one level")
        if (self.n_fft // 2) % self.frame_quantum != 0:
            raise ValueError(
                f"n_fft // 2 = {self.n_fft // 2} frequency bins must be divisible by 2**len(channels) = "
                f"{self.frame_quantum}; use fewer levels or a larger n_fft"
            )
        if not 0 < self.hop_length <= self.n_fft // 2:
            raise ValueError(f"hop_length must be in (0, n_fft / 2], got {self.hop_length}")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ClearSepConfig:
        """A configuration from a named preset (`"small"` or `"audiosep"`), with `overrides` applied."""
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
        return (2 * self.encoder_blocks + 4) * (2**levels - 1) + 2 * 2**levels


__all__ = ["ClearSepConfig"]
