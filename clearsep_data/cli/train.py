"""``clearsep-data train``: train a ClearSepModel on track datasets with on-the-fly mixing."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.launch import check_launch
from clearsep_data.cli.options import config_command
from clearsep_data.training.arguments import MIXING, TrainingArguments

HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(TrainingArguments)}
DEFAULT = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
"""Help and defaults of the fields that ``train`` gives with options of its own (``metadata['cli']``)."""


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


@config_command(TrainingArguments)
def train(
    *,
    datasets: Annotated[list[str], typer.Argument(help=HELP["datasets"], show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help=HELP["output_dir"], show_default=False)],
    model_config: Annotated[Optional[list[str]], typer.Option(help=HELP["model_config"])] = None,
    vocabulary: Annotated[Optional[Path], typer.Option(help=HELP["vocabulary"])] = None,
    ontology: Annotated[Optional[Path], typer.Option(help=HELP["ontology"])] = None,
    queries: Annotated[int, typer.Option("--queries", help=HELP["queries_per_mixture"], rich_help_panel=MIXING)] = DEFAULT["queries_per_mixture"],
    snr_low: Annotated[float, typer.Option(help="Lowest target-to-interferer ratio, dB.", rich_help_panel=MIXING)] = DEFAULT["snr_db"][0],
    snr_high: Annotated[float, typer.Option(help="Highest target-to-interferer ratio, dB.", rich_help_panel=MIXING)] = DEFAULT["snr_db"][1],
    config: dict,
) -> None:
    """Train a query-conditioned separator on clean tracks mixed on the fly.

    Runs on CPU, one GPU, or several processes: `torchrun --nproc_per_node N --no-python clearsep-data train ...`
    (or `accelerate launch --multi_gpu --num_processes N`; add ACCELERATE_USE_CPU=1 on CPU). Killed at any point,
    the same command resumes from the latest checkpoint.
    """
    check_launch()
    from rich.console import Console

    from clearsep_data.training import train as run_train

    console = Console(stderr=True)
    try:
        args = TrainingArguments(
            **config,
            datasets=datasets,
            output_dir=str(output),
            model_config=_parse_model_config(model_config or []),
            vocabulary=str(vocabulary) if vocabulary else None,
            ontology=str(ontology) if ontology else None,
            queries_per_mixture=queries,
            snr_db=(snr_low, snr_high),
        )
        result = run_train(args)
    except USER_ERRORS as error:
        fail(error)
    from clearsep_data.distributed import is_main_process

    if not is_main_process():
        return
    summary = f"trained {result.steps} steps ({result.samples_per_second:.1f} mixtures/s)"
    if result.final_loss is not None:
        summary += f", final loss {result.final_loss:.3f}"
    if result.eval is not None:
        summary += f", eval SI-SDRi {result.eval['eval_si_sdri']:.2f} dB at step {result.eval['step']} ({result.eval['eval_split']})"
    console.print(f"{summary}; model saved to {result.output_dir}")
