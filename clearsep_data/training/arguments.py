"""The arguments of a training run: :class:`TrainingArguments`, saved as ``training_args.json``, and
:class:`TrainingError` for arguments or data that cannot be trained with."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from clearsep_data.errors import ClearSepError

if TYPE_CHECKING:
    from clearsep_data.training.mixing import MixingConfig

# This module imports no torch (the model and mixing modules are imported where used), so that the command line,
# which generates the options of ``clearsep-data train`` from these fields, answers ``--help`` at once.
DEFAULT_LOSS = "snr_sisnr"
"""The objective of a new run: ``clearsep_data.modeling.losses.DEFAULT_LOSS`` (a test checks they agree)."""
QUALITY_MODES = ("off", "sample", "weight")
QUALITY_SCORES = ("re_sisdr", "predicted_si_sdr")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup")
STRATEGIES = "Strategies"
MIXING = "Mixing"
AUGMENTATION = "Augmentation"
RUN = "Run"

#: Fields that do not change the training trajectory: they may differ when a run is resumed.
FREE_ON_RESUME = frozenset(
    {"output_dir", "eval_every", "eval_mixtures", "save_every", "save_total_limit", "log_every", "resume",
     "num_workers", "log_samples", "progress", "cache_gb", "report_to"}
)


class TrainingError(ClearSepError):
    """Arguments or data that cannot be trained with, with the reason."""


@dataclass
class TrainingArguments:
    """Everything a training run depends on; saved as ``training_args.json`` next to the model.

    Each field's ``metadata`` holds its help and, for ``clearsep-data train``, its panel; ``cli``: ``False``
    keeps a field off the command line, a tuple names the command's own options that give it
    (:mod:`clearsep_data.cli.options`).
    """

    datasets: list[str] = field(metadata={
        "help": "Track datasets (folders or Hub ids) whose `train` split is trained on.", "cli": ("datasets",)})
    output_dir: str = field(metadata={"help": "Folder of the model, checkpoints and logs.", "cli": ("output",)})
    init: str | None = field(default=None, metadata={"help": "Continue from this ClearSepModel (folder or Hub id)."})
    preset: str = field(default="small", metadata={
        "help": "Architecture of a new model: small | medium (two levels deeper: 4 s of context) | audiosep."})
    clap_model: str | None = field(default=None, metadata={
        "help": "Pretrained CLAP (Hub id such as laion/clap-htsat-unfused, or folder) as a new model's query encoder: "
        "free-text and audio-example queries; trained with the label names and caption templates."})
    model_config: dict = field(default_factory=dict, metadata={
        "help": "KEY=VALUE override of a new model's config (repeatable).", "cli": ("model_config",)})
    vocabulary: str | None = field(default=None, metadata={
        "help": "class_labels_indices.csv for a new model's queries (default: the labels in the data; `audioset`: AudioSet's 527 classes, shipped).",
        "cli": ("vocabulary",)})
    ontology: str | None = field(default=None, metadata={
        "help": "AudioSet ontology.json: which labels may be mixed together (`audioset`: the copy shipped with clearsep-data).",
        "cli": ("ontology",)})
    steps: int = field(default=10_000, metadata={"help": "Optimisation steps."})
    batch_size: int = field(default=8, metadata={"help": "Mixtures per process per micro-batch."})
    segment_seconds: float = field(default=4.0, metadata={
        "help": "Length of the random training crops (`iterate` uses 2 s: short rounds of the small preset)."})
    lr: float = field(default=1e-3, metadata={
        "help": "Peak learning rate (AdamW, warm-up then cosine decay; `iterate` uses 3e-3: short rounds of the small preset)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay.", "cli": False})
    warmup_steps: int | None = field(default=None, metadata={"help": "Warm-up steps (default 5% of --steps, at most 1000)."})
    lr_scheduler_type: str = field(default="cosine", metadata={
        "help": f"Learning-rate schedule after the linear warm-up (transformers' names): {' | '.join(SCHEDULERS)}."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches per optimisation step."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    bf16: bool = field(default=False, metadata={
        "help": "bf16 autocast (default: accelerate's choice, as `accelerate launch --mixed_precision` or its config sets it)."})
    seed: int = field(default=0, metadata={"help": "Seed of the model initialisation and of the mixtures."})
    deterministic: bool = field(default=False, metadata={"help": "Deterministic torch algorithms.", "cli": False})
    loss: str = field(default=DEFAULT_LOSS, metadata={"help": "snr_sisnr (-0.9 SNR - 0.1 SI-SNR) | l1 (AudioSep)."})
    queries_per_mixture: int = field(default=2, metadata={
        "help": "Queries per mixture: the target, then interferers with their own targets.", "cli": ("queries",)})
    min_interferers: int = field(default=1, metadata={"help": "Fewest interferers per mixture.", "cli": False})
    max_interferers: int = field(default=3, metadata={"help": "Interferers per mixture (at least 1).", "panel": MIXING})
    snr_db: tuple[float, float] = field(default=(-5.0, 5.0), metadata={
        "help": "Range of target-to-interferer ratios, dB.", "cli": ("snr_low", "snr_high")})
    balance_classes: bool = field(default=False, metadata={
        "help": "Draw training tracks so that every class is as likely, whatever its number of tracks (a filter "
        "that keeps few tracks of the classes the model separates worst leaves them that few examples otherwise).",
        "panel": MIXING})
    quality: str = field(default="weight", metadata={
        "help": "Use of separated tracks by their quality score: off | sample | weight.", "panel": STRATEGIES})
    quality_score: str = field(default="re_sisdr", metadata={
        "help": "The track field that is the quality score: re_sisdr (its clip's remix) | predicted_si_sdr (the "
        "track's own, from the quality predictor).", "panel": STRATEGIES})
    quality_centre: float = field(default=5.0, metadata={
        "help": "Quality score (dB) at which a separated track weighs 0.5.", "panel": STRATEGIES})
    quality_width: float = field(default=2.0, metadata={"help": "Width (dB) of the sigmoid weight.", "panel": STRATEGIES})
    silence_rate: float = field(default=0.05, metadata={
        "help": "Share of queries asking for an absent class (silent target).", "panel": STRATEGIES})
    parent_rate: float = field(default=0.25, metadata={
        "help": "Share of queries asking for a parent class of their track's label (Dog for Bark; target: every "
        "source below it).", "panel": STRATEGIES})
    augment: bool = field(default=False, metadata={
        "help": "Augment each source of artificial mixtures (speed, EQ, reverb, gain ramp; see --augment-*).",
        "panel": AUGMENTATION})
    augment_speed: float = field(default=0.1, metadata={
        "help": "Largest relative speed change (pitch and tempo together, by resampling).", "panel": AUGMENTATION})
    augment_eq_db: float = field(default=6.0, metadata={
        "help": "Largest gain (dB) of the random smooth EQ at each of its 8 log-spaced bands.", "panel": AUGMENTATION})
    augment_reverb: float = field(default=0.5, metadata={
        "help": "Share of sources convolved with a synthetic room impulse response (RT60 0.1-0.8 s).",
        "panel": AUGMENTATION})
    augment_gain_db: float = field(default=6.0, metadata={
        "help": "Largest start and end gain (dB) of the gain ramp across a source's crop.", "panel": AUGMENTATION})
    natural_corpus: str | None = field(default=None, metadata={
        "help": "AudioSet-style folder with the original clips: enables natural mixtures.", "panel": STRATEGIES})
    natural_segments: str | None = field(default=None, metadata={"help": "Segments CSV of --natural-corpus.", "panel": STRATEGIES})
    natural_rate: float | None = field(default=None, metadata={
        "help": "Share of natural-mixture examples (default 0.25 with --natural-corpus).", "panel": STRATEGIES})
    eval_every: int = field(default=500, metadata={"help": "Steps between evaluations (0: never).", "panel": RUN})
    eval_mixtures: int = field(default=64, metadata={
        "help": "Fixed held-out mixtures (or --eval-benchmark clips, the first ones) per evaluation.", "panel": RUN})
    eval_benchmark: str | None = field(default=None, metadata={
        "help": "Benchmark folder with references (as for `evaluate`) whose --eval-split is scored during training "
        "(default: mixtures of held-out training tracks, which flatter the model).", "panel": RUN})
    eval_split: str = field(default="valid", metadata={
        "help": "Split of --eval-benchmark scored during training (not the split you report).", "panel": RUN})
    eval_holdout: float = field(default=0.05, metadata={
        "help": "Share of clips held out for evaluation without --eval-benchmark.", "panel": RUN})
    load_best_model_at_end: bool = field(default=True, metadata={
        "help": "Save the evaluated step with the best SI-SDRi as the model (--keep-last: the last step).",
        "flags": ("--keep-best/--keep-last",), "panel": RUN})
    save_every: int = field(default=1000, metadata={"help": "Steps between checkpoints (0: never).", "panel": RUN})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept.", "panel": RUN})
    log_every: int = field(default=10, metadata={"help": "Steps between metrics.jsonl lines.", "panel": RUN})
    resume: bool = field(default=True, metadata={"help": "Resume from the latest checkpoint in --output.", "panel": RUN})
    cache_gb: float = field(default=2.0, metadata={
        "help": "Keep decoded audio in memory when it fits in this many GiB.", "panel": RUN})
    num_workers: int = field(default=0, metadata={"help": "Data-loader worker processes per training process.", "panel": RUN})
    log_samples: bool = field(default=False, metadata={
        "help": "Log the tracks behind every query to samples/process-N.jsonl.", "panel": RUN})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar.", "panel": RUN})
    report_to: list[str] = field(default_factory=list, metadata={
        "help": "Experiment tracker to log metrics to through accelerate (repeatable): tensorboard, wandb, mlflow, "
                "trackio, ... or all; logs under OUTPUT/runs. Default: none (metrics.jsonl only).", "panel": RUN})

    def __post_init__(self):
        self.datasets = [self.datasets] if isinstance(self.datasets, str) else list(self.datasets)
        self.snr_db = tuple(float(value) for value in self.snr_db)
        self.report_to = [self.report_to] if isinstance(self.report_to, str) else list(self.report_to)
        if self.natural_rate is None:
            self.natural_rate = 0.25 if self.natural_corpus else 0.0

    def validate(self) -> None:
        """Raise :class:`TrainingError` naming the first invalid argument: the only check of training settings."""
        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        from clearsep_data.modeling.losses import LOSSES

        checks = [
            (bool(self.datasets), "datasets: give at least one track dataset"),
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.segment_seconds > 0, "segment_seconds must be positive"),
            (self.lr > 0, "lr must be positive"),
            (self.lr_scheduler_type in SCHEDULERS, f"lr_scheduler_type must be one of {', '.join(SCHEDULERS)}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (self.model_config.get("loss", self.loss) == self.loss, "model_config: set the objective with loss (--loss)"),
            (self.quality in QUALITY_MODES, f"quality must be one of {', '.join(QUALITY_MODES)}, not {self.quality!r}"),
            (self.quality_score in QUALITY_SCORES, f"quality_score must be one of {', '.join(QUALITY_SCORES)}, not {self.quality_score!r}"),
            (self.quality_width > 0, "quality_width must be positive"),
            (0 <= self.min_interferers <= self.max_interferers, "need 0 <= min_interferers <= max_interferers"),
            (
                1 <= self.queries_per_mixture <= 1 + self.max_interferers,
                f"queries_per_mixture must be between 1 and 1 + max_interferers ({1 + self.max_interferers})",
            ),
            (0 <= self.silence_rate <= 1, "silence_rate must lie in [0, 1]"),
            (0 <= self.parent_rate <= 1, "parent_rate must lie in [0, 1]"),
            (0 <= self.natural_rate <= 1, "natural_rate must lie in [0, 1]"),
            (0 <= self.augment_speed < 1, "augment_speed must lie in [0, 1)"),
            (self.augment_eq_db >= 0 and self.augment_gain_db >= 0, "augment_eq_db and augment_gain_db must be >= 0"),
            (0 <= self.augment_reverb <= 1, "augment_reverb must lie in [0, 1]"),
            (self.natural_rate == 0 or self.natural_corpus, "natural_rate > 0 needs a natural_corpus"),
            (0 <= self.eval_holdout < 1, "eval_holdout must lie in [0, 1)"),
            (self.eval_every >= 0 and self.save_every >= 0, "eval_every and save_every must be >= 0 (0: never)"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.snr_db[0] <= self.snr_db[1], "snr_db must be (low, high)"),
            (self.init is None or not self.model_config, "model_config applies to a new model, not with init"),
            (
                set(self.report_to) <= {*LOGGER_TYPE_TO_CLASS, "all"},
                f"report_to: {', '.join(sorted(set(self.report_to) - set(LOGGER_TYPE_TO_CLASS)))} is not one of accelerate's "
                f"trackers ({', '.join(LOGGER_TYPE_TO_CLASS)}, all)",
            ),
            (self.init is None or self.clap_model is None, "clap_model applies to a new model, not with init"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> TrainingArguments:
        """Read the arguments back from a ``training_args.json``."""
        data = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def mixing_config(self, sampling_rate: int) -> MixingConfig:
        from clearsep_data.training.augment import AugmentConfig
        from clearsep_data.training.mixing import MixingConfig, seconds_to_samples

        return MixingConfig(
            segment_samples=seconds_to_samples(self.segment_seconds, sampling_rate),
            batch_size=self.batch_size,
            queries_per_mixture=self.queries_per_mixture,
            min_interferers=self.min_interferers,
            max_interferers=self.max_interferers,
            snr_db=self.snr_db,
            silence_rate=self.silence_rate,
            parent_rate=self.parent_rate,
            natural_rate=self.natural_rate,
            balance_classes=self.balance_classes,
            quality=self.quality,
            quality_centre=self.quality_centre,
            quality_width=self.quality_width,
            augment=AugmentConfig(
                sampling_rate, speed=self.augment_speed, eq_db=self.augment_eq_db, reverb_rate=self.augment_reverb,
                gain_db=self.augment_gain_db,
            ) if self.augment else None,
        )



__all__ = ["FREE_ON_RESUME", "TrainingArguments", "TrainingError"]
