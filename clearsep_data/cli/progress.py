"""One progress display: ours (rich), or none with ``--no-progress``; never the libraries' tqdm bars as well."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

Command = TypeVar("Command", bound=Callable)


def silence_library_progress() -> None:
    """Turn off the tqdm bars of ``datasets`` ("Generating train split"), ``transformers`` ("Loading weights",
    "Writing model shards") and ``huggingface_hub`` (downloads, uploads), each with its own switch.

    Interleaved with our rich bars they garble the terminal, and ``--no-progress`` must silence everything.
    """
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def with_one_progress_display(command: Command) -> Command:
    """``command`` with the libraries' bars silenced while it runs (not for ``--help``, which stays fast)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        silence_library_progress()
        return command(*args, **kwargs)

    return run  # type: ignore[return-value]
