"""Training a :class:`ClearSepModel` on ClearSep track datasets with 🤗 Accelerate.

``train(TrainingArguments(...))`` runs the same code single-process, multi-process on CPU
(``torchrun --nproc_per_node N`` or ``accelerate launch`` with ``ACCELERATE_USE_CPU=1``) and
multi-GPU. Every process draws its own mixtures (:mod:`clearsep_data.training.mixing`, seeded by
process index); gradients are averaged by DDP, so one optimisation step sees
``batch_size * grad_accum * num_processes`` mixtures.

Output folder::

    DIR/config.json, DIR/model.safetensors   the final model (``save_pretrained``)
    DIR/training_args.json                   the arguments plus provenance (versions, vocabulary, data)
    DIR/metrics.jsonl                        one JSON line per logged step / evaluation
    DIR/checkpoints/checkpoint-{step}/       model, optimizer, scheduler, RNG states + trainer_state.json
    DIR/samples/process-{i}.jsonl            with ``log_samples``: the tracks behind every query

A checkpoint holds the model, optimizer, scheduler and RNG states (tensors as safetensors, the
rest as JSON: nothing is unpickled on resume) and the step (``trainer_state.json``); mixtures are
a pure function of ``(seed, process, micro-batch)``, so resuming reproduces an uninterrupted run
exactly (on CPU; on GPU up to cuDNN's non-determinism unless ``deterministic=True``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from clearsep_data.training.mixing import (
    QUALITY_MODES,
    LabelRelations,
    MixingConfig,
    MixtureSampler,
    MixtureStream,
    NaturalClips,
    TrackCatalog,
    TrackDataError,
    labels_in,
    load_track_dataset,
    seconds_to_samples,
)

LOSS_KINDS = ("snr_sisnr", "l1")
MODEL_INPUTS = ("input_values", "query_ids", "target_values", "target_weights")
CHECKPOINT_PREFIX = "checkpoint-"
TRAINER_STATE = "trainer_state.json"
ARGS_FILE = "training_args.json"
MODEL_WEIGHTS = "model.safetensors"
OPTIMIZER_TENSORS, OPTIMIZER_STATE = "optimizer.safetensors", "optimizer.json"
SCHEDULER_STATE = "scheduler.json"
RNG_TENSORS, RNG_STATE = "random_states_{rank}.safetensors", "random_states_{rank}.json"

#: Fields that do not change the training trajectory: they may differ when a run is resumed.
_FREE_ON_RESUME = frozenset(
    {"output_dir", "eval_every", "eval_mixtures", "save_every", "save_total_limit", "log_every", "resume",
     "num_workers", "log_samples", "progress", "cache_gb"}
)


class TrainingError(ValueError):
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
    """AudioSet ``class_labels_indices.csv`` for a new model's queries (else the labels found in the data; unused with ``init``)."""
    ontology: str | None = None
    """AudioSet ``ontology.json``; without it (and without a natural corpus) labels are exclusive iff different."""
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
    loss: str = "snr_sisnr"
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
            (self.loss in LOSS_KINDS, f"loss must be one of {', '.join(LOSS_KINDS)}"),
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


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: str
    steps: int
    resumed_from: int
    """Step of the checkpoint the run resumed from (0: a fresh run)."""
    final_loss: float | None
    """Mean training loss over the last logging window."""
    eval: dict | None
    """Metrics of the last evaluation (``eval_si_sdri`` in dB, ...)."""
    samples_per_second: float
    """Training mixtures per second, all processes together, in this session."""
    metrics_path: str


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


def build_model(args: TrainingArguments, label_names: dict[str, str], ontology):
    """A new model for ``args.preset`` or the ``args.init`` model, its vocabulary covering ``label_names``."""
    from clearsep_data.modeling import ClearSepConfig, ClearSepLoadError, ClearSepModel

    if args.init is not None:
        try:
            model = ClearSepModel.from_pretrained(args.init)
        except (ClearSepLoadError, OSError) as error:
            raise TrainingError(f"--init {args.init}: cannot load a ClearSepModel ({str(error).splitlines()[0]})") from None
        new = {mid: name for mid, name in label_names.items() if mid not in model.config.label_mids}
        if new:
            model = extend_vocabulary(model, new, source=args.init)
        model.config.loss = args.loss  # the saved config names the objective it was (last) trained with
        return model
    if args.vocabulary is not None:
        mids, names = _read_vocabulary(args.vocabulary, ontology)
        missing = sorted(set(label_names) - set(mids))
        if missing:
            raise TrainingError(f"{args.vocabulary}: track label(s) missing from the vocabulary: {', '.join(missing)}")
    else:
        mids = sorted(label_names)
        names = [label_names[mid] for mid in mids]
    overrides = {"loss": args.loss, **args.model_config}
    try:
        config = ClearSepConfig.from_preset(args.preset, label_mids=mids, id2label=dict(enumerate(names)), **overrides)
    except (TypeError, ValueError) as error:
        raise TrainingError(f"model configuration: {error}") from None
    return ClearSepModel(config)


def extend_vocabulary(model, labels: dict[str, str], source: str):
    """A copy of ``model`` whose vocabulary has ``labels`` (``{mid: name}``) appended.

    Every parameter and buffer is carried over; those with one row per label (the query embedding
    table) keep their old rows and get freshly initialised new ones.
    """
    from clearsep_data.modeling import ClearSepConfig, ClearSepModel

    if model.config.query_encoder != "embedding":
        raise TrainingError(
            f"--init {source}: the data holds labels outside the model's vocabulary ({', '.join(sorted(labels))}); "
            f"a {model.config.query_encoder!r} query encoder cannot be extended here, train with the model's labels"
        )
    old_size = model.config.num_labels
    config = ClearSepConfig.from_dict(
        {
            **model.config.to_dict(),
            "label_mids": [*model.config.label_mids, *labels],
            "id2label": {**model.config.id2label, **{old_size + i: name for i, name in enumerate(labels.values())}},
            "label2id": None,
        }
    )
    extended = ClearSepModel(config)
    state = extended.state_dict()
    for name, value in model.state_dict().items():
        if state[name].shape == value.shape:
            state[name] = value
        elif state[name].shape[1:] == value.shape[1:] and value.shape[0] == old_size:
            state[name][:old_size] = value
        else:
            raise TrainingError(f"--init {source}: cannot extend {name} {tuple(value.shape)} to the new vocabulary")
    extended.load_state_dict(state)
    return extended


def _read_vocabulary(path: str, ontology) -> tuple[list[str], list[str]]:
    from clearsep_data.corpus import CorpusError, read_class_labels

    if ontology is None:
        raise TrainingError(f"--vocabulary {path} needs an ontology (--ontology ontology.json or --natural-corpus)")
    try:
        mids = read_class_labels(path, ontology)
    except CorpusError as error:
        raise TrainingError(str(error)) from None
    return mids, [ontology.name(mid) for mid in mids]


def _open_natural_corpus(args: TrainingArguments):
    from clearsep_data.corpus import CorpusError, open_corpus

    try:
        return open_corpus(args.natural_corpus, segments=args.natural_segments, ontology=args.ontology)
    except (CorpusError, OSError) as error:
        raise TrainingError(f"--natural-corpus {args.natural_corpus}: {error}") from None


def _load_ontology(args: TrainingArguments, corpus):
    from clearsep_data.ontology import Ontology, OntologyError

    if args.ontology is not None:
        try:
            return Ontology.from_json(args.ontology)
        except OntologyError as error:
            raise TrainingError(str(error)) from None
    return corpus.ontology if corpus is not None else None


def _warmup_steps(args: TrainingArguments) -> int:
    return args.warmup_steps if args.warmup_steps is not None else min(1000, args.steps // 20)


# --------------------------------------------------------------------------------------------
# Checkpoints and logs
# --------------------------------------------------------------------------------------------


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint (one with a trainer state) of the highest step, if any."""
    folder = Path(output_dir) / "checkpoints"
    found = [
        (int(path.name[len(CHECKPOINT_PREFIX):]), path)
        for path in folder.glob(f"{CHECKPOINT_PREFIX}*")
        if path.name[len(CHECKPOINT_PREFIX):].isdigit() and (path / TRAINER_STATE).is_file()
    ]
    return max(found)[1] if found else None


def _check_resumable(args: TrainingArguments, checkpoint: Path, state: dict, num_processes: int) -> None:
    saved = json.loads((checkpoint / ARGS_FILE).read_text())
    current = args.to_dict()
    changed = [
        name for name in current
        if name not in _FREE_ON_RESUME and json.dumps(saved.get(name)) != json.dumps(current[name])
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


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drop the lines of a JSON-lines log written after ``step`` (by a run that went on past its last checkpoint)."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


@dataclass
class _Checkpointed:
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
            _write_json(folder / SCHEDULER_STATE, self.scheduler.state_dict())

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
    _write_json(folder / OPTIMIZER_STATE, {"param_groups": state["param_groups"], "state": values})


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
    _write_json(folder / RNG_STATE.format(rank=rank), states)


def _load_rng_states(folder: Path, rank: int) -> None:
    tensors = load_file(str(folder / RNG_TENSORS.format(rank=rank)))
    torch.set_rng_state(tensors["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[f"cuda.{device}"] for device in range(torch.cuda.device_count())])
    saved = json.loads((folder / RNG_STATE.format(rank=rank)).read_text())
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(saved["numpy"]))


def _save_checkpoint(
    accelerator, args: TrainingArguments, state: dict, provenance: dict, checkpointed: _Checkpointed
) -> None:
    folder = Path(args.output_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{state['step']}"
    checkpointed.save(folder, accelerator)
    accelerator.wait_for_everyone()  # every process's states are on disk before the checkpoint is marked complete
    if accelerator.is_main_process:
        _write_json(folder / ARGS_FILE, {**args.to_dict(), "provenance": provenance})
        _write_json(folder / TRAINER_STATE, state)  # written last: marks the checkpoint complete
        checkpoints = sorted(
            (path for path in folder.parent.glob(f"{CHECKPOINT_PREFIX}*") if path.name[len(CHECKPOINT_PREFIX):].isdigit()),
            key=lambda path: int(path.name[len(CHECKPOINT_PREFIX):]),
        )
        for old in checkpoints[: max(0, len(checkpoints) - max(1, args.save_total_limit))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model, sampler: MixtureSampler, num_mixtures: int, accelerator) -> dict:
    """SI-SDR and SDR improvements (dB) of ``model`` on the sampler's first ``num_mixtures`` mixtures.

    The fixed batches are spread over the processes and the sums reduced, so every process gets
    the same numbers.
    """
    from clearsep_data.metrics import sdr, si_sdr

    num_batches = math.ceil(num_mixtures / sampler.config.batch_size)
    totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    was_training = model.training
    model.eval()
    for index in range(accelerator.process_index, num_batches, accelerator.num_processes):
        batch = sampler.batch(index)
        mixture = torch.from_numpy(batch["input_values"]).to(accelerator.device)
        target = torch.from_numpy(batch["target_values"]).to(accelerator.device)
        with accelerator.autocast():
            output = model(input_values=mixture, query_ids=torch.from_numpy(batch["query_ids"]).to(accelerator.device))
        estimate = output.separated_values.float()
        reference = mixture[:, None, :].expand_as(target)
        totals[0] += (si_sdr(target, estimate) - si_sdr(target, reference)).sum().double()
        totals[1] += (sdr(target, estimate) - sdr(target, reference)).sum().double()
        totals[2] += target.shape[0] * target.shape[1]
    model.train(was_training)
    totals = accelerator.reduce(totals, reduction="sum")
    count = max(float(totals[2]), 1.0)
    return {"eval_si_sdri": float(totals[0]) / count, "eval_sdri": float(totals[1]) / count, "eval_queries": int(totals[2])}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(args: TrainingArguments) -> TrainResult:
    """Train (or continue training) a ClearSepModel; see the module docstring for the outputs.

    May be called repeatedly in one process (the ClearSep loop does): Accelerate's per-run state
    (mixed precision, gradient accumulation) is reset on return; the process group is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    args.validate()
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.grad_accum,
        mixed_precision="bf16" if args.bf16 else "no",
    )
    try:
        return _run(args, accelerator)
    finally:
        accelerator.end_training()
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()


@dataclass
class _Data:
    """The mixtures of a run: training stream, fixed evaluation set, and what went into them."""

    sampler: MixtureSampler
    eval_sampler: MixtureSampler | None
    provenance: dict


def _prepare_data(args: TrainingArguments, accelerator, model, sources, corpus, ontology) -> _Data:
    try:
        catalog = TrackCatalog.from_sources(
            sources, model.config.label_mids, model.config.sampling_rate, args.cache_gb * 2**30
        )
        relations = LabelRelations(catalog.vocabulary, ontology)
        held_out = catalog.holdout_mask(args.eval_holdout) if args.eval_every else np.zeros(len(catalog), bool)
        if held_out.all():
            held_out[:] = False
        natural = None
        if corpus is not None:
            natural = NaturalClips.from_corpus(corpus, catalog, args.cache_gb * 2**30, pool=~held_out)
        mixing = args.mixing_config(model.config.sampling_rate)
        sampler = MixtureSampler(
            catalog, relations, mixing, seed=args.seed, process_index=accelerator.process_index,
            pool=~held_out, natural=natural,
        )
        eval_sampler = _eval_sampler(args, catalog, relations, mixing, held_out, accelerator) if args.eval_every else None
    except TrackDataError as error:
        raise TrainingError(str(error)) from None
    return _Data(sampler, eval_sampler, _provenance(args, sources, catalog, held_out, natural, accelerator))


def _restore(args: TrainingArguments, accelerator, provenance: dict, checkpointed: _Checkpointed) -> int:
    """Load the latest checkpoint (when resuming) and set up the logs; returns the step to start after."""
    output_dir = Path(args.output_dir)
    start_step = 0
    checkpoint = latest_checkpoint(output_dir) if args.resume else None
    if checkpoint is not None:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
        _check_resumable(args, checkpoint, state, accelerator.num_processes)
        checkpointed.load(checkpoint, accelerator)
        start_step = state["step"]
        accelerator.print(f"Resuming from {checkpoint} (step {start_step})")
    logs = [output_dir / "metrics.jsonl"] if accelerator.is_main_process else []
    if args.log_samples:
        logs.append(_samples_path(args, accelerator))
    for log in logs:
        log.parent.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            _truncate_jsonl(log, start_step)
        else:
            log.unlink(missing_ok=True)
    if accelerator.is_main_process:
        _write_json(output_dir / ARGS_FILE, {**args.to_dict(), "provenance": provenance})
    accelerator.wait_for_everyone()
    return start_step


def _run(args: TrainingArguments, accelerator) -> TrainResult:
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    from clearsep_data.modeling.losses import separation_loss

    set_seed(args.seed, deterministic=args.deterministic)
    try:
        sources = [load_track_dataset(name) for name in args.datasets]
    except TrackDataError as error:
        raise TrainingError(str(error)) from None
    corpus = _open_natural_corpus(args) if args.natural_corpus else None
    ontology = _load_ontology(args, corpus)
    model = build_model(args, labels_in(sources), ontology)
    data = _prepare_data(args, accelerator, model, sources, corpus, ontology)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    # Not prepared: an accelerate-prepared scheduler steps once per process per step, for a sharded
    # data loader; here every process draws a full batch, so one step is one scheduler step.
    scheduler = get_cosine_schedule_with_warmup(optimizer, _warmup_steps(args), args.steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    checkpointed = _Checkpointed(model, optimizer, scheduler)
    start_step = _restore(args, accelerator, data.provenance, checkpointed)

    output_dir = Path(args.output_dir)
    metrics_path = output_dir / "metrics.jsonl"
    stream = MixtureStream(data.sampler, start=start_step * args.grad_accum, stop=args.steps * args.grad_accum)
    batches = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.num_workers))
    samples_per_step = args.batch_size * args.grad_accum * accelerator.num_processes
    window: list[torch.Tensor] = []
    last_loss, last_eval = None, None
    model.train()

    with _progress(accelerator.is_main_process and args.progress) as progress:
        task = progress.add_task("train", total=args.steps, completed=start_step, loss="-", rate="-")

        def run_evaluation(step: int) -> dict:
            metrics = evaluate(accelerator.unwrap_model(model), data.eval_sampler, args.eval_mixtures, accelerator)
            _log_metrics(accelerator, metrics_path, {"step": step, **metrics})
            if accelerator.is_main_process and args.progress:
                progress.console.print(f"step {step}: eval SI-SDRi {metrics['eval_si_sdri']:.2f} dB")
            return metrics

        if data.eval_sampler is not None and start_step == 0:
            last_eval = run_evaluation(0)  # the starting point: a new model, or the --init model
        started = time.perf_counter()
        for step in range(start_step + 1, args.steps + 1):
            step_loss = torch.zeros((), device=accelerator.device)
            for micro in range(args.grad_accum):
                batch = next(batches)
                if args.log_samples:
                    _log_sample(_samples_path(args, accelerator), step, (step - 1) * args.grad_accum + micro, batch)
                inputs = {name: batch[name].to(accelerator.device) for name in MODEL_INPUTS}
                with accelerator.accumulate(model):
                    output = model(input_values=inputs["input_values"], query_ids=inputs["query_ids"])
                    loss = separation_loss(
                        output.separated_values.float(), inputs["target_values"], inputs["input_values"],
                        kind=args.loss, weights=inputs["target_weights"],
                    )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach() / args.grad_accum
            scheduler.step()
            window.append(step_loss)

            if step % args.log_every == 0 or step == args.steps:
                last_loss = float(accelerator.reduce(torch.stack(window).mean(), reduction="mean"))
                window.clear()
                rate = (step - start_step) / (time.perf_counter() - started)
                _log_metrics(accelerator, metrics_path, {
                    "step": step, "loss": last_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                    "steps_per_second": rate, "samples_per_second": rate * samples_per_step,
                    "samples": step * samples_per_step,
                })
                progress.update(task, loss=f"{last_loss:.3f}", rate=f"{rate:.2f}")
            if data.eval_sampler is not None and (step % args.eval_every == 0 or step == args.steps):
                last_eval = run_evaluation(step)
            if args.save_every and step % args.save_every == 0:
                state = {"step": step, "num_processes": accelerator.num_processes, "seed": args.seed}
                _save_checkpoint(accelerator, args, state, data.provenance, checkpointed)
            progress.update(task, completed=step)
        elapsed = time.perf_counter() - started

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output_dir)
        _write_json(output_dir / ARGS_FILE, {**args.to_dict(), "provenance": {**data.provenance, "eval": last_eval}})
    accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=str(output_dir),
        steps=args.steps,
        resumed_from=start_step,
        final_loss=last_loss,
        eval=last_eval,
        samples_per_second=(args.steps - start_step) * samples_per_step / elapsed if elapsed > 0 else 0.0,
        metrics_path=str(metrics_path),
    )


def _samples_path(args: TrainingArguments, accelerator) -> Path:
    return Path(args.output_dir) / "samples" / f"process-{accelerator.process_index}.jsonl"


def _eval_sampler(args, catalog, relations, mixing: MixingConfig, held_out: np.ndarray, accelerator) -> MixtureSampler:
    """Fixed evaluation mixtures: one query per mixture, no silence, no natural clips, uniform draws.

    They come from the held-out clips; when those cannot form a mixture (a small dataset), from the
    training tracks, with a warning.
    """
    config = dataclasses.replace(mixing, queries_per_mixture=1, min_interferers=1, silence_rate=0.0, natural_rate=0.0, quality="off")
    common = dict(seed=args.seed, process_index=0, stream=1)
    if held_out.any():
        try:
            return MixtureSampler(catalog, relations, config, pool=held_out, **common)
        except TrackDataError:
            pass
    accelerator.print("warning: the held-out clips cannot form evaluation mixtures; evaluating on training tracks")
    return MixtureSampler(catalog, relations, config, **common)


def _provenance(args, sources, catalog: TrackCatalog, held_out: np.ndarray, natural, accelerator) -> dict:
    import accelerate
    import datasets
    import transformers

    from clearsep_data.schema import ORIGIN_SEPARATED

    return {
        "datasets": [
            {"name": source.name, "tracks": len(source.train), "fingerprint": source.train._fingerprint}
            for source in sources
        ],
        "tracks": {
            "total": len(catalog),
            "separated": sum(origin == ORIGIN_SEPARATED for origin in catalog.origins),
            "held_out": int(held_out.sum()),
        },
        "ontology": args.ontology or (f"{args.natural_corpus} (natural corpus)" if args.natural_corpus else None),
        "natural_clips": len(natural.clips) if natural is not None else 0,
        "natural_skipped": natural.skipped if natural is not None else {},
        "vocabulary_size": len(catalog.vocabulary),
        "audio_cached_in_memory": catalog.audio.caching,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "samples_per_step": args.batch_size * args.grad_accum * accelerator.num_processes,
        "versions": {
            "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "datasets": datasets.__version__,
        },
    }


def _log_metrics(accelerator, path: Path, record: dict) -> None:
    if accelerator.is_main_process:
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def _log_sample(path: Path, step: int, micro_batch: int, batch: dict) -> None:
    record = {
        "step": step,
        "micro_batch": micro_batch,
        "query_tracks": batch["query_tracks"],
        "query_ids": batch["query_ids"].tolist(),
        "natural": batch["natural"].tolist(),
    }
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold blue]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss [bold]{task.fields[loss]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


__all__ = ["TrainingArguments", "TrainResult", "TrainingError", "train", "evaluate", "build_model", "latest_checkpoint"]
