"""The settings of a build, :class:`BuildConfig`: each field's help is in its ``metadata``, from which
``clearsep-data build`` makes its options (:mod:`clearsep_data.cli.options`). Imports no torch, so that the
command line answers ``--help`` at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clearsep_data.filtering import Thresholds

if TYPE_CHECKING:
    import torch


@dataclass
class BuildConfig:
    """Everything that determines a build's output (and so must match when it resumes).

    ``metadata``: ``help`` of the field's option; ``cli``: ``False`` keeps it off the command line, a tuple names
    the options of ``clearsep-data build`` that give it in another shape.
    """

    corpus: str = field(metadata={"help": "AudioSet-style folder, or a Hugging Face dataset (folder or Hub id).", "cli": ("corpus",)})
    output_dir: Path = field(metadata={"help": "Where the dataset is written (parquet shards + README.md).", "cli": ("output_dir",)})
    model: str | None = field(default=None, metadata={
        "help": "ClearSepModel folder or Hub id. Without it only single-event clips become tracks."})
    thresholds: Thresholds = field(default_factory=Thresholds, metadata={
        "help": "Quality thresholds of the separated tracks.",
        "cli": ("thresholds", "min_re_sdr", "min_re_sisdr", "min_energy_ratio", "min_consistency_sisdr", "max_leakage_db",
                "min_predicted_si_sdr"),
    })
    iteration: int = field(default=0, metadata={"help": "Round of the ClearSep loop, stored with every track."})
    segments: str | None = field(default=None, metadata={
        "help": "Segments CSV of an AudioSet-style folder (default balanced_train_segments.csv)."})
    ontology: str | None = field(default=None, metadata={"help": "ontology.json to use instead of the corpus's own (`audioset`: the copy shipped with clearsep-data)."})
    split: str = field(default="train", metadata={
        "help": "Split: of a Hugging Face dataset corpus, or `{split}_segments.csv` of a folder (`train`: balanced_train_segments.csv)."})
    labels_column: str = field(default="labels", metadata={"help": "Labels column of a Hugging Face dataset corpus."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a Hugging Face dataset corpus."})
    streaming: bool = field(default=False, metadata={"help": "Stream a Hugging Face dataset corpus."})
    sampling_rate: int = field(default=16000, metadata={"help": "Track sampling rate when no model is given."})
    keep_rejected: bool = field(default=True, metadata={"help": "Keep rejected tracks in a `rejected` split."})
    block_size: int = field(default=32, metadata={
        "help": "Clips per committed block (the unit of resumption; each block's tracks become one parquet shard per split)."})
    num_workers: int = field(default=0, metadata={
        "help": "DataLoader worker processes that decode the clips (0: the main process); with workers, as many writer "
                "processes FLAC-encode and write the blocks, so the main process only runs the model. The dataset is the same."})
    batch_size: int = field(default=8, metadata={"help": "Mixture encodings per model forward."})
    clips_per_batch: int = field(default=1, metadata={"min": 1,
        "help": "Clips separated in one model call (their tracks re-separated in one more); with --batch-size at least "
                "as large, their chunks share forward passes. The dataset is the same up to float rounding."})
    use_bf16: bool = field(default=False, metadata={"help": "bf16 autocast for the model.", "flags": ("--bf16/--no-bf16",)})

    def fingerprint(self, model_tag: str, sampling_rate: int, corpus_digest: str) -> dict:
        """The settings that define the dataset: a rerun or a resumed build must share them.

        ``corpus_digest`` identifies what the corpus lists (:meth:`Corpus.content_digest`), so a corpus
        regenerated in place is not taken for the one the build started on.
        """
        return {
            "corpus": self.corpus,
            "corpus_digest": corpus_digest,
            "segments": self.segments,
            "ontology": self.ontology,
            "split": self.split,
            "labels_column": self.labels_column,
            "audio_column": self.audio_column,
            "model": model_tag,
            "thresholds": self.thresholds.to_dict(),
            "iteration": self.iteration,
            "sampling_rate": sampling_rate,
            "keep_rejected": self.keep_rejected,
            "block_size": self.block_size,
            "bf16": self.use_bf16,
        }

    def numerics(self, device: torch.device) -> dict:
        """What changes the float results in their last bits: a build resumes only under the same numerics.

        PyTorch picks kernels by the thread count (small-batch 1x1 convolutions go to oneDNN only with more
        than one thread) and by version; the batch size and the clips per batch change the shapes of the model's
        matrix products.
        """
        import torch

        import clearsep_data

        return {
            "threads_per_process": torch.get_num_threads(),
            "torch": torch.__version__,
            "clearsep_data": clearsep_data.__version__,
            "device": device.type,
            "batch_size": self.batch_size,
            "clips_per_batch": self.clips_per_batch,
        }
