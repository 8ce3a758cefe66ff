"""``clearsep-data evaluate``: score a separation model against a benchmark's ground-truth references."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.models import load_separator



def evaluate_command(
    model: Annotated[str, typer.Argument(help="ClearSepModel folder or Hub id.")],
    benchmark: Annotated[Path, typer.Argument(help="AudioSet-style folder with references/manifest.csv (e.g. a demo corpus).")],
    split: Annotated[str, typer.Option(help="Segments file to evaluate: `eval` reads eval_segments.csv.")] = "eval",
    output: Annotated[Optional[Path], typer.Option(help="Write the JSON summary here (default: eval.json in the current folder unless --save-to-model).")] = None,
    save_to_model: Annotated[bool, typer.Option(help="Also write eval.json into the (local) model folder, where the model card reads it.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Clips loaded and separated per batch.")] = 16,
    max_clips: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N clips.")] = None,
    oracle: Annotated[bool, typer.Option(help="Compute the ideal-ratio-mask ceiling.")] = True,
    per_item: Annotated[bool, typer.Option(help="Include every (clip, query) score in the JSON.")] = False,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: cuda if available, else cpu).")] = None,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for the model.")] = False,
    num_workers: Annotated[int, typer.Option(min=1, help="Threads decoding audio ahead of the model.")] = 4,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Separate each labelled event of every benchmark clip and report SDR, SI-SDR and their improvements.

    Each clip's labels become the model's queries (ancestors and descendants reduced with the ontology); each query's estimate is scored against its reference, next to the unprocessed mixture (improvement 0) and an oracle ideal ratio mask (the ceiling of mask-based separation).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from clearsep_data.benchmark_folder import Benchmark
    from clearsep_data.evaluation import EVAL_FILE, evaluate_on_benchmark

    console = Console(stderr=True)
    model_dir = Path(model)
    if save_to_model and not model_dir.is_dir():
        fail(f"--save-to-model needs a local model folder; {model!r} is not one")
    try:
        opened = Benchmark.open(benchmark, split)
    except USER_ERRORS as error:  # BenchmarkError, CorpusError, OntologyError name the file at fault
        fail(error)
    separator = load_separator(model, device)

    bar = Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, disable=not progress
    )
    task = bar.add_task("clips", total=None)
    try:
        with bar:
            result = evaluate_on_benchmark(
                separator,
                opened,
                batch_size=batch_size,
                max_clips=max_clips,
                oracle=oracle,
                use_bf16=bf16,
                num_workers=num_workers,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except USER_ERRORS as error:
        fail(error)

    targets = [output] if output is not None else ([] if save_to_model else [Path(EVAL_FILE)])
    if save_to_model:
        targets.append(model_dir / EVAL_FILE)
    for target in targets:
        result.save(target, include_items=per_item)
    print_report(result.to_dict(), console)
    console.print("written: " + ", ".join(str(target) for target in targets))
    if not result.items:
        fail("no clip could be scored (see the skip reasons above)")


def print_report(summary: dict, console) -> None:
    """The overall table (model, oracle, mixture), the per-class table and the skip reasons of an ``eval.json``."""
    from rich.markup import escape
    from rich.table import Table

    columns = ("SDR", "SI-SDR", "SDRi", "SI-SDRi")
    keys = ("sdr", "si_sdr", "sdri", "si_sdri")
    overall = Table(
        title=escape(
            f"{summary['model']} on {summary['dataset']} ({summary['split']} split): "
            f"{summary['num_items']} items from {summary['num_clips']} clips, dB"
        )
    )
    overall.add_column("estimate")
    for column in columns:
        overall.add_column(column, justify="right")
    rows = (("model", summary["metrics"]), ("oracle IRM (ceiling)", summary["oracle"]), ("mixture (no processing)", summary["mixture"]))
    for name, row in rows:
        if row is not None:
            overall.add_row(name, *(f"{row[key]:.2f}" for key in keys))
    console.print(overall)

    if summary["per_class"]:
        classes = Table(title="per class (model)")
        classes.add_column("class")
        classes.add_column("items", justify="right")
        for column in columns:
            classes.add_column(column, justify="right")
        for name, row in summary["per_class"].items():
            classes.add_row(escape(name), str(row["count"]), *(f"{row[key]:.2f}" for key in keys))
        console.print(classes)

    parents, absent = summary.get("parents"), summary.get("absent")
    if parents:
        gap = parents["si_sdr_minus_child"]
        console.print(
            f"parent queries (e.g. Dog on a Bark clip): {parents['num_items']} items, SI-SDR {parents['si_sdr']:.2f} dB"
            + ("" if gap is None else f", {gap:+.2f} dB against the child's own query")
        )
    if absent:
        console.print(
            f"absent queries: {absent['num_items']} items, output level median {absent['median_level_db']:.1f} dB "
            f"relative to the mixture (90th percentile {absent['p90_level_db']:.1f} dB)"
        )

    if summary["num_skipped"]:
        console.print(f"[yellow]skipped {summary['num_skipped']}:[/yellow]")
        for skip in summary["skipped"][:10]:
            console.print(escape(f"  {skip['where']} ({skip['clip_id']}): {skip['reason']}"))
        if summary["num_skipped"] > 10:
            console.print(f"  ... {summary['num_skipped'] - 10} more, listed in the JSON")

