"""``clearsep-data build``: run the data engine over a corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from clearsep_data.build_config import BuildConfig
from clearsep_data.cli.errors import USER_ERRORS, fail
from clearsep_data.cli.launch import check_launch
from clearsep_data.cli.options import config_command

THRESHOLD_HELP = "Overrides the thresholds file / defaults (dB)."
HELP = {f.name: f.metadata["help"] for f in dataclasses.fields(BuildConfig)}


@config_command(BuildConfig)
def build(
    *,
    corpus: Annotated[str, typer.Argument(help=HELP["corpus"])],
    output_dir: Annotated[Path, typer.Argument(help=HELP["output_dir"])],
    thresholds: Annotated[Optional[Path], typer.Option(help="Thresholds file (.json or .toml) with any of the fields of `Thresholds`.")] = None,
    min_re_sdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_re_sisdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_energy_ratio: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_consistency_sisdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    max_leakage_db: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP)] = None,
    min_predicted_si_sdr: Annotated[Optional[float], typer.Option(help=THRESHOLD_HELP + " Off unless given.")] = None,
    config: dict,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing build in OUTPUT_DIR.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Separate every multi-event clip once per label, score the tracks by remixing, keep the clean ones.

    Killed at any point, the same command resumes. Under `torchrun --nproc_per_node N` or
    `accelerate launch --num_processes N` each process takes its own share of the clips.
    """
    check_launch()
    from rich.console import Console

    from clearsep_data.distributed import is_main_process
    from clearsep_data.engine import build as run_build
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
                min_predicted_si_sdr=min_predicted_si_sdr,
            ),
            source="command line",
        )
        build_config = BuildConfig(
            **config,
            corpus=corpus,
            output_dir=output_dir,
            thresholds=chosen,
        )
        summary = run_build(build_config, overwrite=overwrite, progress=progress)
    except USER_ERRORS as error:
        fail(error)
    if is_main_process():
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
