"""How a command was launched: checks made before any process group exists."""

from __future__ import annotations

import os

from clearsep_data.cli.errors import fail


def check_launch() -> None:
    """Refuse, in one line, a launch for several GPUs (``accelerate launch --multi_gpu``) on a machine without one.

    Without a GPU such a launch is a mistake (the wrong machine, a hidden ``CUDA_VISIBLE_DEVICES``), and
    each process would go on, or fail, on its own with a report of its own; several CPU processes are asked
    for explicitly with ``ACCELERATE_USE_CPU=1``. ``torchrun`` without accelerate's settings and
    single-process runs are not checked: they use the CPU when there is no GPU.
    """
    if not _launched_by_accelerate_for_several_processes():
        return
    import torch
    from accelerate.utils import parse_flag_from_env

    if not torch.cuda.is_available() and not parse_flag_from_env("ACCELERATE_USE_CPU"):
        fail(
            "launched for several GPUs but no GPU is available; on CPU set ACCELERATE_USE_CPU=1 "
            "(or pass --cpu instead of --multi_gpu to accelerate launch)"
        )


def _launched_by_accelerate_for_several_processes() -> bool:
    """``accelerate launch`` sets ``ACCELERATE_MIXED_PRECISION`` in every process it starts, torchrun ``WORLD_SIZE``."""
    world_size = os.environ.get("WORLD_SIZE", "1")
    return "ACCELERATE_MIXED_PRECISION" in os.environ and world_size.isdigit() and int(world_size) > 1
