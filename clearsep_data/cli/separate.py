"""``clearsep-data separate``: separate audio files and folders into one file per query plus the residual."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail, report
from clearsep_data.cli.models import load_separator


def separate(
    model: Annotated[str, typer.Argument(help="ClearSepModel folder or Hub id.")],
    inputs: Annotated[list[Path], typer.Argument(help="Audio files, or folders searched recursively for audio files.")],
    query: Annotated[list[str], typer.Option("--query", "-q", help="A sound to extract (repeatable): a class name or MID of the model's vocabulary (a parent class takes all of its children).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: OUT/NAME/QUERY.flac per input and query, and OUT/NAME/residual.flac.")],
    negative: Annotated[Optional[list[str]], typer.Option("--negative", "-n", help="A sound to keep out of every output (repeatable).")] = None,
    residual: Annotated[bool, typer.Option(help="Also write the input minus the sum of the outputs.")] = True,
    file_format: Annotated[str, typer.Option("--format", help="flac (24-bit, clipped to [-1, 1]) or wav (32-bit float).")] = "flac",
    batch_size: Annotated[int, typer.Option(min=1, help="Chunks of a long input separated per forward pass.")] = 8,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: cuda if available, else cpu).")] = None,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for the model.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Separate every input (any length, any rate, mono or multi-channel) with the model, once for all queries.

    A file that cannot be decoded is reported in one line and skipped; the command then ends with status 1.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from clearsep_data.file_separation import FORMATS, find_jobs, separate_file

    console = Console(stderr=True)
    if file_format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {file_format!r}")
    try:
        jobs = find_jobs(inputs, out)
    except USER_ERRORS as error:
        fail(error)
    separator = load_separator(model, device)
    negatives = list(negative or [])
    try:
        separator.query_embeddings(list(query) + negatives)  # unknown queries stop the command before any work
    except ValueError as error:
        fail(error)

    failed = 0
    bar = Progress(
        TextColumn("separating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
        disable=not progress,
    )  # fmt: skip
    with bar:
        task = bar.add_task("files", total=len(jobs))
        for job in jobs:
            try:
                separate_file(
                    separator, job, query, negative_queries=negatives, residual=residual, file_format=file_format,
                    batch_size=batch_size, use_bf16=bf16,
                )  # fmt: skip
            except USER_ERRORS as error:
                failed += 1
                report(error)
            bar.advance(task)
    console.print(f"separated {len(jobs) - failed} of {len(jobs)} files into {escape(str(out))}", soft_wrap=True)
    if failed:
        fail(f"{failed} of {len(jobs)} files could not be separated (listed above)")
