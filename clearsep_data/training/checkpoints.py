"""Training checkpoints, stored without pickle: tensors as safetensors, everything else as JSON.

``DIR/checkpoints/checkpoint-{step}/`` holds the model, optimizer, scheduler and RNG states, the arguments
(``training_args.json``) and, written last to mark it complete, ``trainer_state.json`` with the step.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import MISSING, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from clearsep_data.training.arguments import FREE_ON_RESUME, TrainingArguments, TrainingError

CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
ARGS_FILE = "training_args.json"
MODEL_WEIGHTS = "model.safetensors"
OPTIMIZER_TENSORS, OPTIMIZER_STATE = "optimizer.safetensors", "optimizer.json"
SCHEDULER_STATE = "scheduler.json"
RNG_TENSORS, RNG_STATE = "random_states_{rank}.safetensors", "random_states_{rank}.json"


def _default(name: str):
    """The default value of the ``TrainingArguments`` field ``name``."""
    spec = TrainingArguments.__dataclass_fields__[name]
    return spec.default_factory() if spec.default is MISSING else spec.default


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint (one with a trainer state) of the highest step, if any."""
    folder = Path(output_dir) / "checkpoints"
    found = [
        (int(path.name[len(CHECKPOINT_PREFIX):]), path)
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX):].isdigit() and (path / TRAINER_STATE).is_file()
    ]
    return max(found)[1] if found else None


def check_resumable(args: TrainingArguments, checkpoint: Path, state: dict, num_processes: int) -> None:
    current = args.to_dict()
    # A field added since the checkpoint was saved trained with its default then (the behaviour before it existed).
    saved = json.loads((checkpoint / ARGS_FILE).read_text())
    saved |= {name: _default(name) for name in current.keys() - saved.keys()}
    changed = [
        name for name in current
        if name not in FREE_ON_RESUME and json.dumps(saved.get(name)) != json.dumps(current[name])
    ]
    if changed:
        details = "; ".join(f"{name}: {saved.get(name)!r} -> {current[name]!r}" for name in changed)
        raise TrainingError(
            f"{checkpoint}: cannot resume with different arguments ({details}); "
            "use the original arguments, another --output, or --no-resume"
        )
    if state["num_processes"] != num_processes:
        raise TrainingError(
            f"{checkpoint}: saved by {state['num_processes']} process(es), resumed with {num_processes}: "
            "every process draws its own mixtures, so resume with the same number"
        )


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log written after ``step`` (by a run that went on past its last checkpoint)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


@dataclass
class Checkpointed:
    """What a checkpoint restores besides the step, stored without pickle: tensors as safetensors, the rest as JSON.

    ``accelerator.save_state`` pickles the optimizer, registered objects (the scheduler) and the RNG states, and
    ``load_state`` unpickles some of them with ``weights_only=False``: a tampered checkpoint would run code on
    resume. Here nothing is unpickled, and files such as ``*.pkl`` in a checkpoint folder are never read.
    Accelerate's micro-batch counter is not stored: it only matters modulo ``grad_accum``, and a checkpoint falls
    between optimisation steps, where that is 0 as in a fresh ``Accelerator``.
    """

    model: torch.nn.Module
    """As prepared by accelerate (unwrapped to save and load)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def save(self, folder: Path, accelerator) -> None:
        """Every process writes its own RNG states (as accelerate does, per rank); the main process the rest."""
        folder.mkdir(parents=True, exist_ok=True)
        _save_rng_states(folder, accelerator.process_index)
        if accelerator.is_main_process:
            save_model(accelerator.unwrap_model(self.model), str(folder / MODEL_WEIGHTS))
            _save_optimizer(folder, self.optimizer.state_dict())
            write_json(folder / SCHEDULER_STATE, self.scheduler.state_dict())

    def load(self, folder: Path, accelerator) -> None:
        if not (folder / OPTIMIZER_STATE).is_file():
            raise TrainingError(
                f"{folder}: no {OPTIMIZER_STATE}; checkpoints of earlier versions (pickled by accelerate) are not "
                "loaded: use another --output or --no-resume"
            )
        load_model(accelerator.unwrap_model(self.model), str(folder / MODEL_WEIGHTS))  # copied onto the model's device
        self.optimizer.load_state_dict(_load_optimizer(folder))
        self.scheduler.load_state_dict(json.loads((folder / SCHEDULER_STATE).read_text()))
        _load_rng_states(folder, accelerator.process_index)


def _save_optimizer(folder: Path, state: dict) -> None:
    """Per-parameter tensors as safetensors (``{index}.{name}``); hyperparameters and other values as JSON."""
    tensors, values = {}, {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                values.setdefault(index, {})[name] = value
    save_file(tensors, str(folder / OPTIMIZER_TENSORS))
    write_json(folder / OPTIMIZER_STATE, {"param_groups": state["param_groups"], "state": values})


def _load_optimizer(folder: Path) -> dict:
    """The optimizer state dict written by :func:`_save_optimizer` (JSON turned the parameter indices into strings)."""
    saved = json.loads((folder / OPTIMIZER_STATE).read_text())
    state = {int(index): entries for index, entries in saved["state"].items()}
    for key, tensor in load_file(str(folder / OPTIMIZER_TENSORS)).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    return {"state": state, "param_groups": saved["param_groups"]}


def _save_rng_states(folder: Path, rank: int) -> None:
    """This process's random states: torch's (CPU and CUDA) as safetensors, Python's and NumPy's as JSON."""
    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{device}": state for device, state in enumerate(torch.cuda.get_rng_state_all())}
    save_file(tensors, str(folder / RNG_TENSORS.format(rank=rank)))
    name, key, *position = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [name, key.tolist(), *position]}
    write_json(folder / RNG_STATE.format(rank=rank), states)


def _load_rng_states(folder: Path, rank: int) -> None:
    tensors = load_file(str(folder / RNG_TENSORS.format(rank=rank)))
    torch.set_rng_state(tensors["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[f"cuda.{device}"] for device in range(torch.cuda.device_count())])
    saved = json.loads((folder / RNG_STATE.format(rank=rank)).read_text())
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(saved["numpy"]))


def save_checkpoint(
    accelerator, args: TrainingArguments, state: dict, provenance: dict, checkpointed: Checkpointed
) -> None:
    folder = Path(args.output_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['step']}"
    checkpointed.save(folder, accelerator)
    accelerator.wait_for_everyone()  # every process's states are on disk before the checkpoint is marked complete
    if accelerator.is_main_process:
        write_json(folder / ARGS_FILE, {**args.to_dict(), "provenance": provenance})
        write_json(folder / TRAINER_STATE, state)  # written last: marks the checkpoint complete
        checkpoints = sorted(
            (path for path in folder.parent.glob(f"{CHECKPOINT_PREFIX}*") if path.name[len(CHECKPOINT_PREFIX):].isdigit()),
            key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]),
        )
        for old in checkpoints[: max(0, len(checkpoints) - max(1, args.save_total_limit))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


__all__ = ["Checkpointed", "check_resumable", "latest_checkpoint", "save_checkpoint", "truncate_jsonl", "write_json"]
