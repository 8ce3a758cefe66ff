"""The arguments of a training run: :class:`TrainingArguments`, saved as ``training_args.json``, and
:class:`TrainingError` for arguments or data that cannot be trained with."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clearsep_data.errors import ClearSepError
from clearsep_data.modeling.losses import DEFAULT_LOSS, LOSSES
from clearsep_data.training.mixing import QUALITY_MODES, MixingConfig, seconds_to_samples

#: Fields that do not change the training trajectory: they may differ when a run is resumed.
FREE_ON_RESUME = frozenset(
    {"output_dir", "eval_every", "eval_mixtures", "save_every", "save_total_limit", "log_every", "resume",
     "num_workers", "log_samples", "progress", "cache_gb"}
)


class TrainingError(ClearSepError):
    """Arguments or data that cannot be trained with, with the reason."""


@dataclass
class TrainingArguments:
    """Everything a training run depends on; saved as ``training_args.json`` next to the model."""

    datasets: list[str]
    """Track datasets (local folders or Hub ids) whose ``train`` split is trained on."""
    output_dir: str
    init: str | None = None
    """A pretrained ClearSepModel (folder or Hub id) to continue from; else a new model of ``preset``."""
    preset: str = "small"
    model_config: dict = field(default_factory=dict)
    """Overrides of the preset's ``ClearSepConfig`` fields for a new model."""
    vocabulary: str | None = None
    """AudioSet ``class_labels_indices.csv`` for a new model's queries (else the labels found in the data; unused with ``init``);
    ``"audioset"``: the 527-class list shipped with the package (:mod:`clearsep_data.audioset`)."""
    ontology: str | None = None
    """AudioSet ``ontology.json`` (``"audioset"``: the copy shipped with the package); without it (and without a natural
    corpus) labels are exclusive iff different."""
    natural_corpus: str | None = None
    """AudioSet-style folder (``clearsep_data.corpus.open_corpus``) holding the original clips of the tracks."""
    natural_segments: str | None = None
    steps: int = 10_000
    batch_size: int = 8
    segment_seconds: float = 4.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    """Linear warm-up before the cosine decay; ``None``: 5% of ``steps`` (at most 1000)."""
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    bf16: bool = False
    seed: int = 0
    deterministic: bool = False
    loss: str = DEFAULT_LOSS
    queries_per_mixture: int = 2
    min_interferers: int = 1
    max_interferers: int = 3
    snr_db: tuple[float, float] = (-5.0, 5.0)
    quality: str = "weight"
    """Quality-aware use of separated tracks: ``off``, ``sample`` (draw probability) or ``weight`` (loss weight)."""
    quality_centre: float = 5.0
    quality_width: float = 2.0
    silence_rate: float = 0.05
    natural_rate: float | None = None
    """Share of natural-mixture examples; ``None``: 0.25 with a natural corpus, else 0."""
    eval_every: int = 500
    eval_mixtures: int = 64
    eval_holdout: float = 0.05
    """Share of clips (by a hash of the clip id) held out of training for evaluation."""
    save_every: int = 1000
    save_total_limit: int = 2
    log_every: int = 10
    resume: bool = True
    cache_gb: float = 2.0
    """Decoded audio is kept in memory (float32) when all of it fits in this many GiB, else decoded per use."""
    num_workers: int = 0
    log_samples: bool = False
    progress: bool = True

    def __post_init__(self):
        self.datasets = [self.datasets] if isinstance(self.datasets, str) else list(self.datasets)
        self.snr_db = tuple(float(value) for value in self.snr_db)
        if self.natural_rate is None:
            self.natural_rate = 0.25 if self.natural_corpus else 0.0

    def validate(self) -> None:
        """Raise :class:`TrainingError` naming the first invalid argument."""
        checks = [
            (bool(self.datasets), "datasets: give at least one track dataset"),
            (self.steps >= 1, "steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.segment_seconds > 0, "segment_seconds must be positive"),
            (self.lr > 0, "lr must be positive"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (self.model_config.get("loss", self.loss) == self.loss, "model_config: set the objective with loss (--loss)"),
            (self.quality in QUALITY_MODES, f"quality must be one of {', '.join(QUALITY_MODES)}"),
            (0 <= self.silence_rate <= 1, "silence_rate must lie in [0, 1]"),
            (0 <= self.natural_rate <= 1, "natural_rate must lie in [0, 1]"),
            (self.natural_rate == 0 or self.natural_corpus, "natural_rate > 0 needs a natural_corpus"),
            (0 <= self.eval_holdout < 1, "eval_holdout must lie in [0, 1)"),
            (self.eval_every >= 0 and self.save_every >= 0, "eval_every and save_every must be >= 0 (0: never)"),
            (self.log_every >= 1, "log_every must be >= 1"),
            (self.snr_db[0] <= self.snr_db[1], "snr_db must be (low, high)"),
            (self.init is None or not self.model_config, "model_config applies to a new model, not with init"),
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
        return MixingConfig(
            segment_samples=seconds_to_samples(self.segment_seconds, sampling_rate),
            batch_size=self.batch_size,
            queries_per_mixture=self.queries_per_mixture,
            min_interferers=self.min_interferers,
            max_interferers=self.max_interferers,
            snr_db=self.snr_db,
            silence_rate=self.silence_rate,
            natural_rate=self.natural_rate,
            quality=self.quality,
            quality_centre=self.quality_centre,
            quality_width=self.quality_width,
        )



__all__ = ["FREE_ON_RESUME", "TrainingArguments", "TrainingError"]
