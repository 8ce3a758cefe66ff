"""Process state under ``torchrun`` / ``accelerate launch`` (imports torch only when a state is made)."""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import timedelta


def distributed_state():
    """accelerate's process state; on CPU it must be told so, or every process would do all the work."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs

    # Processes finish their shares at different times: allow long waits at the final barrier.
    kwargs = InitProcessGroupKwargs(timeout=timedelta(hours=12)).to_kwargs()
    return PartialState(cpu=not torch.cuda.is_available(), **kwargs)


def stop_with_launcher(poll_seconds: float = 0.1) -> None:
    """End this worker soon after its launcher dies (the command line calls it for every command).

    ``kill -9`` of ``torchrun`` (or ``accelerate launch``) gives its workers no chance to be told: they would run
    on, orphaned, and finish the job behind the user's back. Committed work is kept (blocks and checkpoints are
    atomic), so rerunning resumes.
    """
    if "LOCAL_RANK" not in os.environ:  # not started by a launcher
        return
    message = f"error: the launcher (PID {os.getppid()}) is gone; stopping. Rerun the same command to resume.\n"
    exit_with_parent(message, poll_seconds)


def exit_with_parent(message: str = "", poll_seconds: float = 0.1, parent: int | None = None) -> None:
    """End this process (after writing ``message`` to stderr) soon after its parent dies, or the process ``parent``
    when given (a process that did not fork this one); a daemon thread watches it.

    Helper processes (a build's decoding workers and block writers) call it at start, so that none outlives a build
    killed by ``kill -9``.
    """
    watched = os.getppid() if parent is None else parent

    def alive() -> bool:
        if parent is None:
            return os.getppid() == watched
        try:
            os.kill(watched, 0)
        except ProcessLookupError:
            return False
        return True

    def watch() -> None:
        while alive():
            time.sleep(poll_seconds)
        if message:
            sys.stderr.write(message)
            sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch, name="clearsep-parent-watch", daemon=True).start()


def is_main_process() -> bool:
    """Whether this process prints a command's results (the only one, or rank 0 of a launch)."""
    from accelerate import PartialState

    return PartialState().is_main_process
