"""Separate audio files and folders with a :class:`~clearsep_data.modeling.ClearSepModel` (``clearsep-data separate``).

Every input file is decoded whole at its own rate (any length: :meth:`ClearSepModel.separate` runs chunked and exact),
separated once for all queries, and written as ``OUT/{name}/{query}.{format}`` (one file per query, at the input's
rate and length) plus ``OUT/{name}/residual.{format}``: the input minus the sum of the queries' outputs. ``name`` is
the file's stem, or its path inside a folder given as input (without the suffix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from clearsep_data.audio import load_audio_native
from clearsep_data.corpus import AUDIO_EXTENSIONS
from clearsep_data.errors import ClearSepError

if TYPE_CHECKING:
    from clearsep_data.modeling import ClearSepModel

RESIDUAL = "residual"
FORMATS = {"flac": "PCM_24", "wav": "FLOAT"}
"""Output formats and their sample types: 24-bit FLAC (clipped to [-1, 1]) or 32-bit float WAV (never clipped)."""


class SeparationInputError(ClearSepError):
    """An input path that cannot be separated, or outputs that would overwrite each other."""


@dataclass(frozen=True)
class SeparationJob:
    """One input file and the folder its outputs go to."""

    source: Path
    output_dir: Path


def find_jobs(inputs: Sequence[str | os.PathLike], output_dir: str | os.PathLike) -> list[SeparationJob]:
    """The audio files named by ``inputs`` (files, or folders searched recursively for audio suffixes), in order."""
    output_dir = Path(output_dir)
    jobs: list[SeparationJob] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise SeparationInputError(f"{item}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            jobs += [SeparationJob(p, output_dir / p.relative_to(item).with_suffix("")) for p in files]
        elif item.is_file():
            jobs.append(SeparationJob(item, output_dir / item.stem))
        else:
            raise SeparationInputError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.output_dir in seen:
            raise SeparationInputError(
                f"{seen[job.output_dir]} and {job.source} would both write to {job.output_dir}: separate them apart"
            )
        seen[job.output_dir] = job.source
    return jobs


def output_names(queries: Sequence[str]) -> list[str]:
    """A file name per query: its text in lower case with runs of other characters as ``-``, made unique."""
    names: list[str] = []
    for query in queries:
        base = re.sub(r"[^0-9a-z]+", "-", query.casefold()).strip("-") or "query"
        base = f"{base}-query" if base == RESIDUAL else base
        name, number = base, 2
        while name in names:
            name, number = f"{base}-{number}", number + 1
        names.append(name)
    return names


def separate_file(
    model: ClearSepModel,
    job: SeparationJob,
    queries: Sequence[str],
    *,
    negative_queries: Sequence[str] = (),
    residual: bool = True,
    file_format: str = "flac",
    batch_size: int = 8,
    use_bf16: bool = False,
) -> list[Path]:
    """Separate one file and write its outputs; returns the paths written.

    Audio that cannot be decoded raises ``AudioError``, audio the model refuses :class:`SeparationInputError`; both
    name the file.
    """
    waveform, rate = load_audio_native(job.source)
    try:
        output = model.separate(
            waveform,
            list(queries),
            sampling_rate=rate,
            negative_queries=list(negative_queries),
            return_residual=residual,
            return_dict=True,
            batch_size=batch_size,
            use_bf16=use_bf16,
        )
    except ValueError as error:  # e.g. non-finite samples: name the file
        raise SeparationInputError(f"{job.source}: {error}") from None
    tracks = dict(zip(output_names(queries), output.separated_values))
    if residual:
        tracks[RESIDUAL] = output.residual
    job.output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, track in tracks.items():
        path = job.output_dir / f"{name}.{file_format}"
        sf.write(path, np.asarray(track, dtype=np.float32), rate, subtype=FORMATS[file_format])
        written.append(path)
    return written
