"""``clearsep-data train``: train a ClearSepModel on track datasets with on-the-fly mixing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.launch import check_launch

STRATEGY = "Strategies"
MIXING = "Mixing"
RUN = "Run"


def _parse_model_config(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs, each value parsed as JSON when it can be (``channels=[8,16]``), else a string."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--model-config")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def train(
    datasets: Annotated[list[str], typer.Argument(help="Track datasets (folders or Hub ids) whose `train` split is trained on.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the model, checkpoints and logs.", show_default=False)],
    init: Annotated[Optional[str], typer.Option(help="Continue from this ClearSepModel (folder or Hub id).")] = None,
    preset: Annotated[str, typer.Option(help="Architecture of a new model: small | audiosep.")] = "small",
    model_config: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE override of a new model's config (repeatable).")] = None,
    vocabulary: Annotated[Optional[Path], typer.Option(help="class_labels_indices.csv for a new model's queries (default: the labels in the data; `audioset`: AudioSet's 527 classes, shipped).")] = None,
    ontology: Annotated[Optional[Path], typer.Option(help="AudioSet ontology.json: which labels may be mixed together (`audioset`: the copy shipped with clearsep-data).")] = None,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 10_000,
    batch_size: Annotated[int, typer.Option(help="Mixtures per process per micro-batch.")] = 8,
    segment_seconds: Annotated[float, typer.Option(help="Length of the random training crops.")] = 4.0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine decay).")] = 1e-3,
    warmup_steps: Annotated[Optional[int], typer.Option(help="Warm-up steps (default 5% of --steps, at most 1000).")] = None,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimisation step.")] = 1,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm.")] = 1.0,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the model initialisation and of the mixtures.")] = 0,
    loss: Annotated[str, typer.Option(help="snr_sisnr (-0.9 SNR - 0.1 SI-SNR) | l1 (AudioSep).")] = "snr_sisnr",
    queries: Annotated[int, typer.Option("--queries", help="Queries per mixture: the target, then interferers with their own targets.", rich_help_panel=MIXING)] = 2,
    max_interferers: Annotated[int, typer.Option(help="Interferers per mixture (at least 1).", rich_help_panel=MIXING)] = 3,
    snr_low: Annotated[float, typer.Option(help="Lowest target-to-interferer ratio, dB.", rich_help_panel=MIXING)] = -5.0,
    snr_high: Annotated[float, typer.Option(help="Highest target-to-interferer ratio, dB.", rich_help_panel=MIXING)] = 5.0,
    quality: Annotated[str, typer.Option(help="Use of separated tracks by Re-SI-SDR: off | sample | weight.", rich_help_panel=STRATEGY)] = "weight",
    quality_centre: Annotated[float, typer.Option(help="Re-SI-SDR (dB) at which a separated track weighs 0.5.", rich_help_panel=STRATEGY)] = 5.0,
    quality_width: Annotated[float, typer.Option(help="Width (dB) of the sigmoid weight.", rich_help_panel=STRATEGY)] = 2.0,
    silence_rate: Annotated[float, typer.Option(help="Share of queries asking for an absent class (silent target).", rich_help_panel=STRATEGY)] = 0.05,
    natural_corpus: Annotated[Optional[str], typer.Option(help="AudioSet-style folder with the original clips: enables natural mixtures.", rich_help_panel=STRATEGY)] = None,
    natural_segments: Annotated[Optional[str], typer.Option(help="Segments CSV of --natural-corpus.", rich_help_panel=STRATEGY)] = None,
    natural_rate: Annotated[Optional[float], typer.Option(help="Share of natural-mixture examples (default 0.25 with --natural-corpus).", rich_help_panel=STRATEGY)] = None,
    eval_every: Annotated[int, typer.Option(help="Steps between evaluations (0: never).", rich_help_panel=RUN)] = 500,
    eval_mixtures: Annotated[int, typer.Option(help="Fixed held-out mixtures per evaluation.", rich_help_panel=RUN)] = 64,
    eval_holdout: Annotated[float, typer.Option(help="Share of clips held out for evaluation.", rich_help_panel=RUN)] = 0.05,
    save_every: Annotated[int, typer.Option(help="Steps between checkpoints (0: never).", rich_help_panel=RUN)] = 1000,
    save_total_limit: Annotated[int, typer.Option(help="Checkpoints kept.", rich_help_panel=RUN)] = 2,
    log_every: Annotated[int, typer.Option(help="Steps between metrics.jsonl lines.", rich_help_panel=RUN)] = 10,
    resume: Annotated[bool, typer.Option(help="Resume from the latest checkpoint in --output.", rich_help_panel=RUN)] = True,
    cache_gb: Annotated[float, typer.Option(help="Keep decoded audio in memory when it fits in this many GiB.", rich_help_panel=RUN)] = 2.0,
    num_workers: Annotated[int, typer.Option(help="Data-loader worker processes per training process.", rich_help_panel=RUN)] = 0,
    log_samples: Annotated[bool, typer.Option(help="Log the tracks behind every query to samples/process-N.jsonl.", rich_help_panel=RUN)] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.", rich_help_panel=RUN)] = True,
) -> None:
    """Train a query-conditioned separator on clean tracks mixed on the fly.

    Runs on CPU, one GPU, or several processes: `torchrun --nproc_per_node N --no-python clearsep-data train ...`
    (or `accelerate launch --multi_gpu --num_processes N`; add ACCELERATE_USE_CPU=1 on CPU). Killed at any point,
    the same command resumes from the latest checkpoint.
    """
    check_launch()
    from rich.console import Console

    from clearsep_data.training import TrainingArguments, train as run_train

    console = Console(stderr=True)
    try:
        args = TrainingArguments(
            datasets=datasets,
            output_dir=str(output),
            init=init,
            preset=preset,
            model_config=_parse_model_config(model_config or []),
            vocabulary=str(vocabulary) if vocabulary else None,
            ontology=str(ontology) if ontology else None,
            natural_corpus=natural_corpus,
            natural_segments=natural_segments,
            steps=steps,
            batch_size=batch_size,
            segment_seconds=segment_seconds,
            lr=lr,
            warmup_steps=warmup_steps,
            grad_accum=grad_accum,
            max_grad_norm=max_grad_norm,
            bf16=bf16,
            seed=seed,
            loss=loss,
            queries_per_mixture=queries,
            max_interferers=max_interferers,
            snr_db=(snr_low, snr_high),
            quality=quality,
            quality_centre=quality_centre,
            quality_width=quality_width,
            silence_rate=silence_rate,
            natural_rate=natural_rate,
            eval_every=eval_every,
            eval_mixtures=eval_mixtures,
            eval_holdout=eval_holdout,
            save_every=save_every,
            save_total_limit=save_total_limit,
            log_every=log_every,
            resume=resume,
            cache_gb=cache_gb,
            num_workers=num_workers,
            log_samples=log_samples,
            progress=progress,
        )
        result = run_train(args)
    except USER_ERRORS as error:
        fail(error)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    summary = f"trained {result.steps} steps ({result.samples_per_second:.1f} mixtures/s)"
    if result.final_loss is not None:
        summary += f", final loss {result.final_loss:.3f}"
    if result.eval is not None:
        summary += f", eval SI-SDRi {result.eval['eval_si_sdri']:.2f} dB"
    console.print(f"{summary}; model saved to {result.output_dir}")
