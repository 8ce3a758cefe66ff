"""The plots of a track dataset's statistics (for ``clearsep-data stats --plots`` and the dataset card)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from clearsep_data.stats import DatasetStats
from clearsep_data.tracks import QUALITY_FIELDS


def write_plots(stats: DatasetStats, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``quality_histograms.png`` and ``tracks_per_class.png`` to ``out_dir``; returns their paths."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend (Agg canvas)
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = {"accepted": "tab:green", "rejected": "tab:red"}

    bounds = _threshold_bounds(stats)
    columns = 3
    rows = math.ceil(len(QUALITY_FIELDS) / columns)
    figure = Figure(figsize=(4 * columns, 3 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes in grid[len(QUALITY_FIELDS) :]:
        axes.set_axis_off()
    for axes, name in zip(grid, QUALITY_FIELDS):
        histogram = stats.histograms[name]
        for group, counts in histogram.counts.items():
            axes.stairs(counts, histogram.edges, label=group, color=colours.get(group), fill=True, alpha=0.45)
        if name in bounds:
            axes.axvline(bounds[name], color="black", linestyle="--", linewidth=1, label="threshold")
        if not histogram.counts:
            axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
        axes.set_title(name)
        axes.set_xlabel("dB")
        axes.set_ylabel("tracks")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if histogram.counts:
            axes.legend(fontsize="small")
    quality_path = out_dir / "quality_histograms.png"
    figure.savefig(quality_path, dpi=100)

    names = [c.label_name or c.label for c in stats.classes]
    figure = Figure(figsize=(7, 1.2 + 0.35 * max(len(names), 1)), layout="constrained")
    axes = figure.subplots()
    accepted = np.array([c.accepted for c in stats.classes])
    rejected = np.array([c.rejected for c in stats.classes])
    axes.barh(names, accepted, color=colours["accepted"], label="accepted")
    axes.barh(names, rejected, left=accepted, color=colours["rejected"], label="rejected")
    axes.invert_yaxis()
    axes.set_xlabel("tracks")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title("Tracks per class")
    axes.legend(fontsize="small")
    classes_path = out_dir / "tracks_per_class.png"
    figure.savefig(classes_path, dpi=100)
    return [quality_path, classes_path]


def _threshold_bounds(stats: DatasetStats) -> dict[str, float]:
    """Quality field -> bound of the most common ``thresholds`` JSON (``min_re_sdr`` bounds ``re_sdr``)."""
    if not stats.thresholds:
        return {}
    try:
        values = json.loads(next(iter(stats.thresholds)))
    except json.JSONDecodeError:
        return {}
    bounds = {}
    for key, value in values.items() if isinstance(values, dict) else ():
        name = key.removeprefix("min_").removeprefix("max_")
        if name in QUALITY_FIELDS and isinstance(value, (int, float)):
            bounds[name] = float(value)
    return bounds
