"""``clearsep-data stats``: what a track dataset holds, per class, and how clean it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail


def stats(
    dataset: Annotated[str, typer.Argument(help="Track dataset folder, or Hub dataset id (org/name[@revision]).")],
    plots: Annotated[Optional[Path], typer.Option(help="Folder to write PNG plots to.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="File to write the statistics to, as JSON.")] = None,
) -> None:
    """Tracks per class (accepted / rejected), origins, quality distributions and reject reasons."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from clearsep_data.stats import compute_stats, summary_tables
    from clearsep_data.stats_plots import write_plots

    console = Console()
    try:
        result = compute_stats(dataset)
    except USER_ERRORS as error:
        fail(error)
    rate = f", {result.sampling_rate} Hz" if result.sampling_rate else ""
    console.print(
        f"[bold]{dataset}[/bold]: {result.num_accepted} accepted, {result.num_rejected} rejected tracks{rate}", soft_wrap=True
    )
    for summary in summary_tables(result):
        if not summary.rows:
            continue
        table = Table(title=summary.title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for position, (column, numeric) in enumerate(zip(summary.columns, summary.numeric())):
            # a column of single words (field names, MIDs) stays whole; one with phrases (reject reasons, JSON) wraps
            # between words, and a word longer than the column (a model id) folds rather than being cut
            one_word = all(" " not in row[position] for row in summary.rows)
            table.add_column(column, justify="right" if numeric else "left", no_wrap=numeric or one_word, overflow="fold")
        for row in summary.rows:
            table.add_row(*row)
        console.print(table)
    if plots is not None:
        for path in write_plots(result, plots):
            console.print(f"wrote {path}", soft_wrap=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_path}", soft_wrap=True)
