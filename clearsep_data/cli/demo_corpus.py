"""``clearsep-data demo-corpus``: synthesise a small AudioSet-style corpus, so everything runs offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail


def demo_corpus(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the corpus to (must be empty unless --overwrite).")],
    clips: Annotated[int, typer.Option(min=1, help="Training clips (balanced_train_segments.csv).")] = 300,
    single_event_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fraction of the training clips that hold a single event (the clean data).")
    ] = 0.4,
    eval_clips: Annotated[
        Optional[int], typer.Option(min=0, help="Held-out multi-event clips (eval_segments.csv). Default: max(20, clips // 5).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same arguments write byte-identical files.")] = 0,
    sampling_rate: Annotated[int, typer.Option(help="Sampling rate of every clip, in Hz.")] = 16000,
    seconds: Annotated[float, typer.Option(help="Length of every clip, in seconds.")] = 10.0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a demo corpus already in OUT_DIR.")] = False,
) -> None:
    """Write a synthetic AudioSet-style corpus: 9 sound classes, single- and multi-event clips, ground-truth references.

    The layout is that of AudioSet (segments CSVs, class_labels_indices.csv, ontology.json, audio/{YTID}.flac)
    plus references/{YTID}/*.flac: the clean events of every multi-event clip, which sum to the clip.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from clearsep_data.demo_corpus import MANIFEST, default_eval_clips, generate_demo_corpus

    console = Console(stderr=True)
    total = clips + (default_eval_clips(clips) if eval_clips is None else eval_clips)
    started = time.perf_counter()
    try:
        with Progress(
            TextColumn("[bold]Synthesising clips"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("clips", total=total)
            summary = generate_demo_corpus(
                out_dir,
                clips=clips,
                eval_clips=eval_clips,
                seed=seed,
                sampling_rate=sampling_rate,
                seconds=seconds,
                overwrite=overwrite,
                single_event_fraction=single_event_fraction,
                progress=lambda done: bar.advance(task, done),
            )
    except USER_ERRORS as error:
        fail(error)
    elapsed = time.perf_counter() - started

    table = Table(title="Clips per class", title_justify="left")
    table.add_column("class")
    table.add_column("train", justify="right")
    table.add_column("eval", justify="right")
    for name, count in summary.train_clips_per_class.items():
        table.add_row(name, str(count), str(summary.eval_clips_per_class[name]))
    console.print(table)
    out = summary.out_dir
    console.print(
        f"Wrote {summary.train_clips + summary.eval_clips} clips of {summary.seconds:g} s at {summary.sampling_rate} Hz "
        f"in {elapsed:.1f} s to [bold]{out}[/bold]\n"
        f"  train: {summary.train_clips} clips ({summary.single_event_clips} single-event, "
        f"{summary.multi_event_clips} multi-event) in {out / 'balanced_train_segments.csv'}\n"
        f"  eval:  {summary.eval_clips} multi-event clips in {out / 'eval_segments.csv'}\n"
        f"  audio: {out / 'audio'}; {summary.reference_files} reference tracks listed in {out / MANIFEST}\n"
        f"  {summary.clips_with_background} clips have an unlabelled background"
    )
