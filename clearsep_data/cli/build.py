"""``clearsep-data build``: run the data engine over a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.launch import check_launch

THRESHOLD_HELP = "Overrides the thresholds file / defaults (dB)."


def build(
    corpus: Annotated[str, typer.Argument(help="AudioSet-style folder, or a Hugging Face dataset (folder or Hub id).")],
    output_dir: Annotated[Path, typer.Argument(help="Where the dataset is written (parquet shards + README.md).")],
    model: Annotated[Optional[str], typer.Option(help="ClearSepModel folder or Hub id. Without it only single-event clips become tracks.")] = None,
    thresholds: Annotated[Optional[Path], typer.Option(help="Thresholds file (.json or .toml) with any of the fields of `Thresholds`.")] = None,
    min_re_sdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_re_sisdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_energy_ratio: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_consistency_sisdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    max_leakage_db: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    iteration: Annotated[int, typer.Option(help="Round of the ClearSep loop, stored with every track.")] = 0,
    segments: Annotated[Optional[str], typer.Option(help="Segments CSV of an AudioSet-style folder (default balanced_train_segments.csv).")] = None,
    ontology: Annotated[Optional[str], typer.Option(help="ontology.json to use instead of the corpus's own (`audioset`: the copy shipped with clearsep-data).")] = None,
    split: Annotated[str, typer.Option(help="Split: of a Hugging Face dataset corpus, or `{split}_segments.csv` of a folder (`train`: balanced_train_segments.csv).")] = "train",
    labels_column: Annotated[str, typer.Option(help="Labels column of a Hugging Face dataset corpus.")] = "labels",
    audio_column: Annotated[str, typer.Option(help="Audio column of a Hugging Face dataset corpus.")] = "audio",
    streaming: Annotated[bool, typer.Option(help="Stream a Hugging Face dataset corpus.")] = False,
    sampling_rate: Annotated[int, typer.Option(help="Track sampling rate when no model is given.")] = 16000,
    keep_rejected: Annotated[bool, typer.Option(help="Keep rejected tracks in a `rejected` split.")] = True,
    block_size: Annotated[int, typer.Option(help="Clips per committed block (the unit of resumption).")] = 32,
    max_shard_size: Annotated[str, typer.Option(help="Largest parquet shard, e.g. 500MB.")] = "500MB",
    batch_size: Annotated[int, typer.Option(help="Mixture encodings per model forward.")] = 8,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast for the model.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing build in OUTPUT_DIR.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Separate every multi-event clip once per label, score the tracks by remixing, keep the clean ones.

    Killed at any point, the same command resumes. Under `torchrun --nproc_per_node N` or
    `accelerate launch --num_processes N` each process takes its own share of the clips.
    """
    check_launch()
    from datasets.utils.py_utils import convert_file_size_to_int
    from rich.console import Console

    from clearsep_data.engine import BuildConfig, build as run_build
    from clearsep_data.filtering import Thresholds

    console = Console(stderr=True)
    try:
        chosen = Thresholds.from_file(thresholds) if thresholds else Thresholds()
        chosen = chosen.updated(
            dict(
                min_re_sdr=min_re_sdr,
                min_re_sisdr=min_re_sisdr,
                min_energy_ratio=min_energy_ratio,
                min_consistency_sisdr=min_consistency_sisdr,
                max_leakage_db=max_leakage_db,
            ),
            source="command line",
        )
        config = BuildConfig(
            corpus=corpus,
            output_dir=output_dir,
            model=model,
            thresholds=chosen,
            iteration=iteration,
            segments=segments,
            ontology=ontology,
            split=split,
            labels_column=labels_column,
            audio_column=audio_column,
            streaming=streaming,
            sampling_rate=sampling_rate,
            keep_rejected=keep_rejected,
            block_size=block_size,
            max_shard_bytes=convert_file_size_to_int(max_shard_size),
            batch_size=batch_size,
            use_bf16=bf16,
        )
        summary = run_build(config, overwrite=overwrite, progress=progress)
    except USER_ERRORS as error:
        fail(error)
    if summary is not None:
        print_summary(summary, output_dir, console)


def print_summary(summary, output_dir: Path, console) -> None:
    """The final summary table of a build."""
    from rich.table import Table

    table = Table(title=f"ClearSep build: {output_dir}")
    table.add_column("class")
    table.add_column("accepted", justify="right")
    table.add_column("rejected", justify="right")
    for name in sorted(set(summary.accepted_per_class) | set(summary.rejected_per_class)):
        table.add_row(name, str(summary.accepted_per_class.get(name, 0)), str(summary.rejected_per_class.get(name, 0)))
    table.add_section()
    table.add_row("[bold]all", str(summary.accepted_tracks), str(summary.rejected_tracks))
    console.print(table)
    console.print(
        f"clips {summary.clips}: {summary.single_source_clips} single-source, {summary.separated_clips} separated, "
        f"{summary.skipped_clips} skipped" + (f" ({summary.skip_reasons})" if summary.skipped_clips else ""),
        highlight=False,
        markup=False,
    )
    if summary.accepted_tracks + summary.rejected_tracks == 0:
        from rich.markup import escape

        console.print(f"[yellow]warning:[/yellow] no track was produced: {escape(no_tracks_reason(summary))}", highlight=False, soft_wrap=True)


def no_tracks_reason(summary) -> str:
    """Why a build produced no track: its most frequent skip reasons."""
    if not summary.clips:
        return "the corpus has no rows"
    top = list(summary.skip_reasons.items())[:3]
    reasons = "; ".join(f"{count}x {reason}" for reason, count in top)
    return f"{summary.skipped_clips} of {summary.clips} clips were skipped ({reasons}); see skips.jsonl"
