"""Where a build's blocks are FLAC-encoded and written, beside the model: a thread, or spawned processes.

The worker processes import this module only (numpy, soundfile, pyarrow, datasets: no torch, no model), so they start
in about a second. Track rows reach them with their audio as waveforms (``{"array", "path"}``, as
:class:`~clearsep_data.track_maker.TrackMaker` makes them) and leave as FLAC bytes (``{"bytes", "path"}``).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from datasets import Features

from clearsep_data.audio import encode_flac
from clearsep_data.build_folder import BuildFolder
from clearsep_data.corpus import Skip
from clearsep_data.distributed import exit_with_parent


def block_writer(processes: int) -> Executor:
    """One thread when ``processes`` is 0, else ``processes`` spawned processes.

    Spawned, not forked: a fork of the build's process would inherit its OpenMP threads' state and its lock on the
    build folder. A writer whose build is killed ends on its own (:func:`~clearsep_data.distributed.exit_with_parent`). As with any spawned
    process, a script that calls ``build`` with workers needs the ``if __name__ == "__main__":`` guard.
    """
    if processes == 0:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearsep-commit")
    return ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"), initializer=exit_with_parent)


def encode_audio(rows: list[dict], sampling_rate: int) -> list[dict]:
    """The rows with their ``audio`` waveform encoded as FLAC bytes."""
    return [{**row, "audio": {"bytes": encode_flac(row["audio"]["array"], sampling_rate), "path": row["audio"]["path"]}} for row in rows]


def write_block(root: Path, number: int, rows_by_split: dict[str, list[dict]], skips: list[Skip], manifest: dict,
                features: Features, sampling_rate: int) -> None:
    """Encode a block's tracks and commit the block to the build folder at ``root``."""
    encoded = {split: encode_audio(rows, sampling_rate) for split, rows in rows_by_split.items()}
    BuildFolder(root).commit_block(number, encoded, skips, manifest, features)
