"""What a training run scores itself on, and the best model it keeps.

Two validation sets, scored the same way (:func:`clearsep_data.metrics.separation_scores`, the definition
:mod:`clearsep_data.evaluation` reports with):

* :class:`BenchmarkValidation` (``--eval-benchmark FOLDER --eval-split valid``): the clips of a benchmark split with
  references: real mixtures, ideally of recordings no training clip uses (``benchmarks/realsound.py --valid-clips``
  writes such a split). This is what tells whether the model generalises.
* :class:`TrackValidation` (the fallback): fixed mixtures of the tracks of held-out clips (``--eval-holdout``).
  Their sources are other takes of the training data's recordings at best, so its numbers flatter the model.

Every evaluation's metrics carry ``eval_split``, the name of the set they come from. :class:`BestModel` keeps the
weights of the evaluated step with the highest SI-SDRi in ``DIR/best-model/``; with ``load_best_model_at_end``
(the default) they become the run's model.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Protocol

import torch
from safetensors.torch import load_model, save_model

from clearsep_data.metrics import separation_scores
from clearsep_data.training.arguments import TrainingError
from clearsep_data.training.mixing import MixtureSampler

BEST_FOLDER = "best-model"
BEST_STATE = "best.json"
WEIGHTS = "model.safetensors"


class Validation(Protocol):
    split: str
    """What is scored, for logs and the saved state (``benchmark FOLDER:valid``, ``held-out tracks``)."""

    def evaluate(self, model, accelerator) -> dict:
        """``{"eval_split", "eval_si_sdri", "eval_sdri", "eval_items"}`` (dB), the same on every process."""


def _metrics(split: str, si_sdri: float, sdri: float, items: int) -> dict:
    return {"eval_split": split, "eval_si_sdri": si_sdri, "eval_sdri": sdri, "eval_items": items}


class TrackValidation:
    """Fixed mixtures (the sampler's first ``num_mixtures``) of held-out tracks."""

    def __init__(self, sampler: MixtureSampler, num_mixtures: int, split: str):
        self.sampler, self.num_mixtures, self.split = sampler, num_mixtures, split

    @torch.no_grad()
    def evaluate(self, model, accelerator) -> dict:
        """The fixed batches are spread over the processes and the sums reduced."""
        num_batches = math.ceil(self.num_mixtures / self.sampler.config.batch_size)
        totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
        was_training = model.training
        model.eval()
        for index in range(accelerator.process_index, num_batches, accelerator.num_processes):
            batch = self.sampler.batch(index)
            mixture = torch.from_numpy(batch["input_values"]).to(accelerator.device)
            target = torch.from_numpy(batch["target_values"]).to(accelerator.device)
            with accelerator.autocast():
                output = model(input_values=mixture, query_ids=torch.from_numpy(batch["query_ids"]).to(accelerator.device))
            scores = separation_scores(target, output.separated_values.float(), mixture)
            totals[0] += (scores["si_sdr"] - scores["mixture_si_sdr"]).sum().double()
            totals[1] += (scores["sdr"] - scores["mixture_sdr"]).sum().double()
            totals[2] += target.shape[0] * target.shape[1]
        model.train(was_training)
        totals = accelerator.reduce(totals, reduction="sum")
        count = max(float(totals[2]), 1.0)
        return _metrics(self.split, float(totals[0]) / count, float(totals[1]) / count, int(totals[2]))


class BenchmarkValidation:
    """The first ``max_clips`` clips of a benchmark split, scored by :func:`~clearsep_data.evaluation.evaluate_on_benchmark`."""

    def __init__(self, benchmark, max_clips: int, split: str):
        self.benchmark, self.max_clips, self.split = benchmark, max_clips, split

    def evaluate(self, model, accelerator) -> dict:
        """The main process evaluates (``separate`` batches the clips itself); the others receive its numbers."""
        from accelerate.utils import broadcast_object_list

        from clearsep_data.evaluation import evaluate_on_benchmark

        found = [None]
        if accelerator.is_main_process:
            result = evaluate_on_benchmark(model, self.benchmark, max_clips=self.max_clips, oracle=False, num_workers=1)
            if not result.items:
                raise TrainingError(f"{self.split}: no clip could be scored ({len(result.skipped)} skipped)")
            metrics = result.metrics
            found = [_metrics(self.split, metrics["si_sdri"], metrics["sdri"], result.num_items)]
        if accelerator.num_processes > 1:
            broadcast_object_list(found)
        return found[0]


class BestModel:
    """The evaluated step with the highest SI-SDRi: its metrics in ``DIR/best-model/best.json``, its weights beside.

    A resumed run keeps the record: mixtures and initialisation are pure functions of the seed, so the steps redone
    after the checkpoint retrace the same trajectory (exactly on CPU).
    """

    def __init__(self, output_dir: Path, resumed: bool):
        self.folder = Path(output_dir) / BEST_FOLDER
        state = self.folder / BEST_STATE
        if not resumed:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.record: dict | None = json.loads(state.read_text()) if resumed and state.is_file() else None

    def offer(self, step: int, metrics: dict, model, accelerator) -> bool:
        """Save ``model`` (unwrapped) if ``metrics`` beat the best so far; True if they did."""
        if self.record is not None and metrics["eval_si_sdri"] <= self.record["eval_si_sdri"]:
            return False
        self.record = {"step": step, **metrics}
        if accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_model(model, str(self.folder / WEIGHTS))
            (self.folder / BEST_STATE).write_text(json.dumps(self.record, indent=2) + "\n")
        return True

    def restore(self, model) -> None:
        """Load the best weights into ``model`` (unwrapped)."""
        load_model(model, str(self.folder / WEIGHTS))


__all__ = ["BEST_FOLDER", "BenchmarkValidation", "BestModel", "TrackValidation", "Validation"]
