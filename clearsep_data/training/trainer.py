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
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clearsep_data.training.arguments import TrainingArguments, TrainingError
from clearsep_data.training.catalog import (
    LabelRelations,
    NaturalClips,
    TrackCatalog,
    TrackDataError,
    labels_in,
    load_track_dataset,
)
from clearsep_data.training.checkpoints import (
    ARGS_FILE,
    TRAINER_STATE,
    Checkpointed,
    check_resumable,
    latest_checkpoint,
    save_checkpoint,
    truncate_jsonl,
    write_json,
)
from clearsep_data.training.mixing import MixingConfig, MixtureSampler, MixtureStream
from clearsep_data.training.model_setup import build_model
from clearsep_data.training.validation import BenchmarkValidation, BestModel, TrackValidation, Validation

MODEL_INPUTS = ("input_values", "query_ids", "target_values", "target_weights", "presence_labels")


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
    """Metrics of the saved model's evaluation: the best step's (``load_best_model_at_end``) or the last
    (``step``, ``eval_split``, ``eval_si_sdri`` in dB, ...)."""
    samples_per_second: float
    """Training mixtures per second, all processes together, in this session."""
    metrics_path: str


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


def _open_natural_corpus(args: TrainingArguments):
    from clearsep_data.corpus import CorpusError, open_corpus

    try:
        return open_corpus(args.natural_corpus, segments=args.natural_segments, ontology=args.ontology)
    except (CorpusError, OSError) as error:
        raise TrainingError(f"--natural-corpus {args.natural_corpus}: {error}") from None


def _load_ontology(args: TrainingArguments, corpus):
    from clearsep_data import audioset
    from clearsep_data.ontology import Ontology, OntologyError

    if args.ontology is not None:
        try:
            return Ontology.from_json(audioset.ontology_file(args.ontology))
        except OntologyError as error:
            raise TrainingError(str(error)) from None
    return corpus.ontology if corpus is not None else None


def _warmup_steps(args: TrainingArguments) -> int:
    return args.warmup_steps if args.warmup_steps is not None else min(1000, args.steps // 20)



# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def train(args: TrainingArguments) -> TrainResult:
    """Train (or continue training) a ClearSepModel; see the module docstring for the outputs.

    May be called repeatedly in one process (the ClearSep loop does): Accelerate's per-run state
    (mixed precision, gradient accumulation) is reset on return; the process group is kept.
    """
    from accelerate.state import AcceleratorState, GradientState

    args.validate()
    accelerator = _accelerator(args)
    try:
        return _run(args, accelerator)
    finally:
        # Not accelerator.end_training(): it destroys the process group, and the loop trains again in the same launch.
        for tracker in accelerator.trackers:
            tracker.finish()
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()


def _accelerator(args: TrainingArguments):
    """The run's ``Accelerator``: mixed precision from ``--bf16``, else from ``accelerate launch --mixed_precision``,
    its config file or ``ACCELERATE_MIXED_PRECISION`` (``None`` lets accelerate read them); ``--report-to``
    trackers, logging under ``OUTPUT/runs`` and started here with the run's arguments."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.grad_accum,
        mixed_precision="bf16" if args.bf16 else None,
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs")),
    )
    if args.report_to:
        started = {str(getattr(tracker, "value", tracker)) for tracker in accelerator.log_with}
        missing = sorted(set(args.report_to) - started - {"all"})
        if missing:
            raise TrainingError(f"report_to: {', '.join(missing)} is not installed (pip install {' '.join(missing)})")
        hyperparameters = {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
                           for key, value in args.to_dict().items()}  # fmt: skip  (trackers take scalars only)
        accelerator.init_trackers(output_dir.name or "clearsep", config=hyperparameters)
    return accelerator


def match_gradient_layout(model: torch.nn.Module) -> None:
    """Give every gradient its parameter's strides, so that DDP stops warning "Grad strides do not match bucket view
    strides" (and copying through a slow path).

    The multi-threaded CPU backward of a convolution whose weight has size-1 dimensions (the 1x1 shortcut, skip and
    output convolutions, the one-channel input convolution) returns e.g. a ``(32, 32, 1, 1)`` gradient with strides
    ``(32, 1, 32, 32)`` where the weight has ``(32, 1, 1, 1)``: the same values, and autograd accepts it (it ignores
    the strides of size-1 dimensions), but DDP compares every stride with its bucket's view.
    """
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.register_hook(functools.partial(_with_layout_of, parameter))


def _with_layout_of(parameter: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    return gradient if gradient.stride() == parameter.stride() else torch.empty_like(parameter).copy_(gradient)


@dataclass
class _Data:
    """The mixtures of a run: training stream, fixed evaluation set, and what went into them."""

    sampler: MixtureSampler
    validation: Validation | None
    provenance: dict


def _prepare_data(args: TrainingArguments, accelerator, model, sources, corpus, ontology) -> _Data:
    try:
        catalog = TrackCatalog.from_sources(
            sources, model.config.label_mids, model.config.sampling_rate, args.cache_gb * 2**30, quality_score=args.quality_score
        )
        relations = LabelRelations(catalog.vocabulary, ontology)
        hold_out = args.eval_every and not args.eval_benchmark
        held_out = catalog.holdout_mask(args.eval_holdout) if hold_out else np.zeros(len(catalog), bool)
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
        validation = _validation(args, catalog, relations, mixing, held_out, accelerator) if args.eval_every else None
    except TrackDataError as error:
        raise TrainingError(str(error)) from None
    provenance = _provenance(args, sources, catalog, held_out, natural, accelerator)
    return _Data(sampler, validation, {**provenance, "eval_split": validation.split if validation else None})


def _restore(args: TrainingArguments, accelerator, provenance: dict, checkpointed: Checkpointed) -> int:
    """Load the latest checkpoint (when resuming) and set up the logs; returns the step to start after."""
    output_dir = Path(args.output_dir)
    start_step = 0
    checkpoint = latest_checkpoint(output_dir) if args.resume else None
    if checkpoint is not None:
        state = json.loads((checkpoint / TRAINER_STATE).read_text())
        check_resumable(args, checkpoint, state, accelerator.num_processes)
        checkpointed.load(checkpoint, accelerator)
        start_step = state["step"]
        accelerator.print(f"Resuming from {checkpoint} (step {start_step})")
    logs = [output_dir / "metrics.jsonl"] if accelerator.is_main_process else []
    if args.log_samples:
        logs.append(_samples_path(args, accelerator))
    for log in logs:
        log.parent.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            truncate_jsonl(log, start_step)
        else:
            log.unlink(missing_ok=True)
    if accelerator.is_main_process:
        write_json(output_dir / ARGS_FILE, {**args.to_dict(), "provenance": provenance})
    accelerator.wait_for_everyone()
    return start_step


def _run(args: TrainingArguments, accelerator) -> TrainResult:
    from accelerate.utils import set_seed
    from transformers import get_scheduler

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
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=_warmup_steps(args), num_training_steps=args.steps)
    if accelerator.num_processes > 1:
        match_gradient_layout(model)
    model, optimizer = accelerator.prepare(model, optimizer)
    checkpointed = Checkpointed(model, optimizer, scheduler)
    start_step = _restore(args, accelerator, data.provenance, checkpointed)
    best_model = BestModel(Path(args.output_dir), resumed=start_step > 0)

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
            metrics = {"step": step, **data.validation.evaluate(accelerator.unwrap_model(model), accelerator)}
            best = best_model.offer(step, metrics, accelerator.unwrap_model(model), accelerator)
            _log_metrics(accelerator, metrics_path, metrics)
            if accelerator.is_main_process and args.progress:
                mark = " (best so far)" if best else ""
                progress.console.print(f"step {step}: eval SI-SDRi {metrics['eval_si_sdri']:.2f} dB on {metrics['eval_split']}{mark}")
            return metrics

        if data.validation is not None and start_step == 0:
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
                    loss = model(**inputs).loss  # model.config.loss (= args.loss), weighted by target_weights
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
            if data.validation is not None and (step % args.eval_every == 0 or step == args.steps):
                last_eval = run_evaluation(step)
            if args.save_every and step % args.save_every == 0:
                state = {"step": step, "num_processes": accelerator.num_processes, "seed": args.seed}
                save_checkpoint(accelerator, args, state, data.provenance, checkpointed)
            progress.update(task, completed=step)
        elapsed = time.perf_counter() - started

    accelerator.wait_for_everyone()
    saved_eval = last_eval
    if args.load_best_model_at_end and best_model.record is not None:
        saved_eval = best_model.record
        if accelerator.is_main_process:
            best_model.restore(accelerator.unwrap_model(model))
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(output_dir)
        evaluations = {"eval": saved_eval, "last_eval": last_eval, "best_eval": best_model.record}
        write_json(output_dir / ARGS_FILE, {**args.to_dict(), "provenance": {**data.provenance, **evaluations}})
    accelerator.wait_for_everyone()
    return TrainResult(
        output_dir=str(output_dir),
        steps=args.steps,
        resumed_from=start_step,
        final_loss=last_loss,
        eval=saved_eval,
        samples_per_second=(args.steps - start_step) * samples_per_step / elapsed if elapsed > 0 else 0.0,
        metrics_path=str(metrics_path),
    )


def _samples_path(args: TrainingArguments, accelerator) -> Path:
    return Path(args.output_dir) / "samples" / f"process-{accelerator.process_index}.jsonl"


def _validation(args, catalog, relations, mixing: MixingConfig, held_out: np.ndarray, accelerator) -> Validation:
    """The clips of ``--eval-benchmark``'s ``--eval-split``; else fixed mixtures of held-out tracks: one query per
    mixture, no silence, no natural clips, uniform draws (from the training tracks, with a warning, when the
    held-out clips cannot form a mixture)."""
    if args.eval_benchmark:
        from clearsep_data.corpus import CorpusError
        from clearsep_data.benchmark_folder import Benchmark, BenchmarkError

        try:
            benchmark = Benchmark.open(args.eval_benchmark, args.eval_split)
        except (BenchmarkError, CorpusError, OSError) as error:
            raise TrainingError(f"--eval-benchmark {args.eval_benchmark} (split {args.eval_split}): {error}") from None
        return BenchmarkValidation(benchmark, args.eval_mixtures, f"benchmark {args.eval_benchmark} split {args.eval_split}")
    config = dataclasses.replace(
        mixing, queries_per_mixture=1, min_interferers=1, silence_rate=0.0, natural_rate=0.0, quality="off", augment=None
    )
    common = dict(seed=args.seed, process_index=0, stream=1)
    if held_out.any():
        try:
            sampler = MixtureSampler(catalog, relations, config, pool=held_out, **common)
            return TrackValidation(sampler, args.eval_mixtures, f"mixtures of {int(held_out.sum())} held-out tracks")
        except TrackDataError:
            pass
    accelerator.print("warning: the held-out clips cannot form evaluation mixtures; evaluating on training tracks")
    return TrackValidation(MixtureSampler(catalog, relations, config, **common), args.eval_mixtures, "mixtures of training tracks")


def _provenance(args, sources, catalog: TrackCatalog, held_out: np.ndarray, natural, accelerator) -> dict:
    import accelerate
    import datasets
    import transformers

    from clearsep_data.tracks import ORIGIN_SEPARATED

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
    """A line of ``metrics.jsonl``, and the same values to the ``--report-to`` trackers."""
    if accelerator.is_main_process:
        with path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    if accelerator.trackers:
        accelerator.log({key: value for key, value in record.items() if key != "step"}, step=record["step"])


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


__all__ = ["TrainResult", "train"]
