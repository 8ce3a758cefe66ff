"""Where a build's blocks are FLAC-encoded and written, beside the model: a thread, or writer processes.

The writer processes import this module only (numpy, soundfile, pyarrow, datasets: no torch, no model). Track rows reach them with their audio as waveforms (``{"array", "path"}``, as
:class:`~clearsep_data.track_maker.TrackMaker` makes them; a long clip's tracks arrive encoded) and leave as FLAC
bytes (``{"bytes", "path"}``).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from datasets import Features

from clearsep_data.audio import encode_flac
from clearsep_data.build_folder import BuildFolder
from clearsep_data.corpus import Skip
from clearsep_data.distributed import exit_with_parent
from clearsep_data.tracks import COUNT_COLUMNS, TrackCounts


def block_writer(processes: int) -> Executor:
    """One thread when ``processes`` is 0, else ``processes`` processes.

    The processes come from a fork server that has imported this module only: neither a fork of the build's process
    (its OpenMP threads' state, its lock on the build folder) nor a fresh interpreter that re-imports the caller's
    script (``spawn``). A writer whose build is killed ends on its own
    (:func:`~clearsep_data.distributed.exit_with_parent`), and its fork server with it.
    """
    if processes == 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearsep-commit")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    # The writers are the fork server's children, and each holds the fd that keeps the server alive: they watch the build.
    return ProcessPoolExecutor(max_workers=processes, mp_context=context, initializer=exit_with_parent,
                               initargs=("", 0.1, os.getpid()))


def encode_audio(rows: list[dict], sampling_rate: int) -> list[dict]:
    """The rows with their ``audio`` waveform encoded as FLAC bytes (rows that hold FLAC bytes already stay as they are)."""
    return [row if "bytes" in row["audio"] else
            {**row, "audio": {"bytes": encode_flac(row["audio"]["array"], sampling_rate), "path": row["audio"]["path"]}}
            for row in rows]


def write_block(root: Path, number: int, rows_by_split: dict[str, list[dict]], skips: list[Skip], manifest: dict,
                features: Features, sampling_rate: int) -> None:
    """Encode a block's tracks and commit the block to the build folder at ``root``, its track counts in its manifest
    (so that finishing the build reads no track file)."""
    encoded = {split: encode_audio(rows, sampling_rate) for split, rows in rows_by_split.items()}
    counts = TrackCounts()
    for split, rows in rows_by_split.items():
        if rows:
            counts.add(split, {column: [row[column] for row in rows] for column in COUNT_COLUMNS})
    BuildFolder(root).commit_block(number, encoded, skips, {**manifest, "tracks": counts.to_dict()}, features)
