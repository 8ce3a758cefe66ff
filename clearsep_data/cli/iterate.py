"""``clearsep-data iterate``: the ClearSep loop (engine, filter, retrain) for several rounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.launch import check_launch


def iterate(
    corpus: Annotated[str, typer.Argument(help="AudioSet-style corpus folder (with eval_segments.csv + references/ to score each round).")],
    output_dir: Annotated[Path, typer.Argument(help="Where round-k/{tracks,model,eval.json}, summary.json and rounds.png go.")],
    rounds: Annotated[int, typer.Option(help="Rounds after round 0.")] = 2,
    train_steps: Annotated[int, typer.Option(help="Training steps of each round after round 0.")] = 200,
    round0_steps: Annotated[Optional[int], typer.Option(help="Training steps of round 0 (default: --train-steps).")] = 400,
    thresholds: Annotated[Optional[Path], typer.Option(help="Round-1 thresholds file (.json/.toml); later rounds tighten it.")] = None,
    threshold_step: Annotated[float, typer.Option(help="dB by which each round after the first tightens the thresholds.")] = 1.0,
    natural_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of natural-mixture examples in rounds >= 1 (off by default: it cost up to 1.8 dB in our benchmark).")
    ] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Training mixtures per step.")] = 8,
    segment_seconds: Annotated[
        float, typer.Option(help="Length of the training crops (2 s, not train's 4 s: the loop's short rounds on the small preset).")
    ] = 2.0,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate of each round (3e-3, not train's 1e-3: the loop's short rounds on the small preset).")
    ] = 3e-3,
    seed: Annotated[int, typer.Option(help="Seed of round 0 (round k uses seed + k).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train on clean clips, separate the natural ones, keep what passes, retrain; resumes if killed."""
    check_launch()
    from rich.console import Console

    from clearsep_data.filtering import Thresholds
    from clearsep_data.distributed import is_main_process
    from clearsep_data.loop import PLOT_FILE, SUMMARY_FILE, LoopConfig, round_training, run_loop

    console = Console()
    try:
        config = LoopConfig(
            corpus=corpus,
            output_dir=output_dir,
            rounds=rounds,
            train_steps=train_steps,
            round0_steps=round0_steps,
            thresholds=Thresholds.from_file(thresholds) if thresholds else Thresholds(),
            threshold_step=threshold_step,
            natural_rate=natural_rate,
            training=round_training(batch_size=batch_size, segment_seconds=segment_seconds, lr=lr),
            seed=seed,
            progress=progress,
        )
        results = run_loop(config, on_round=lambda result: console.print(round_table([result], header=result.round == 0)))
    except USER_ERRORS as error:
        fail(error)
    if not is_main_process():
        return
    console.print(f"Summary: {output_dir / SUMMARY_FILE}, plot: {output_dir / PLOT_FILE}", soft_wrap=True)
    console.print("Load the result (Python):")
    console.print(load_hint(results[-1].tracks, results[-1].model), soft_wrap=True, markup=False, highlight=False)


def load_hint(tracks: str, model: str) -> str:
    """Python that loads the last round's dataset and model, one statement a line (pasteable as printed)."""
    return "\n".join(
        [
            "from datasets import load_dataset",
            "from clearsep_data import ClearSepModel",
            f'tracks = load_dataset({json.dumps(tracks)}, split="train")',
            f"model = ClearSepModel.from_pretrained({json.dumps(model)})",
        ]
    )


ROUND_COLUMNS = (
    ("round", 5), ("single-source", 13), ("separated accepted", 9), ("rejected", 8), ("mean Re-SDR (dB)", 11),
    ("held-out SI-SDRi (dB)", 12),
)  # fmt: skip
"""The columns of the rounds table and their widths: every round's table lines up with the first's, in 80 columns."""


def round_table(results, header: bool = True):
    """A rich table with one row per round; printed as each round ends, only the first one with the header."""
    from rich import box
    from rich.table import Table

    def db(value):
        return "-" if value is None else f"{value:.2f}"

    table = Table(title="ClearSep rounds" if header else None, show_header=header, box=box.SIMPLE_HEAD, show_edge=False)
    for column, width in ROUND_COLUMNS:
        table.add_column(column, justify="right", width=width)
    for result in results:
        table.add_row(
            str(result.round),
            str(result.single_source_tracks),
            str(result.separated_accepted),
            str(result.separated_rejected),
            db(result.mean_re_sdr_accepted),
            db(result.eval_si_sdri),
        )
    return table
