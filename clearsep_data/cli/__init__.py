"""The ``clearsep-data`` command line. Each command lives in a module of its own, which imports its
heavy dependencies (torch, datasets, transformers) inside the command so that ``--help`` stays fast."""

import os
import signal
import sys
from types import FrameType
from typing import Annotated

# OpenMP threads that spin while they wait for work make torch up to 10x slower when other processes share the
# cores (measured: a training step of the small model, 2 threads on 2 busy cores, 0.8-7 s spinning, 0.4 s passive);
# passive waiting costs little on an idle machine. libgomp reads this when torch loads, so it is set before any
# command imports torch; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from clearsep_data.cli import build, demo_corpus, evaluate, iterate, push, separate, stats, train
from clearsep_data.cli.progress import with_one_progress_display
from clearsep_data.distributed import stop_with_launcher

app = typer.Typer(
    name="clearsep-data",
    help="ClearSep: turn natural multi-source audio into datasets of clean single-source tracks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


def version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"clearsep-data {version('clearsep-data')}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ClearSep: turn natural multi-source audio into datasets of clean single-source tracks."""


app.command("demo-corpus")(demo_corpus.demo_corpus)
for name, command in (
    ("build", build.build),
    ("train", train.train),
    ("iterate", iterate.iterate),
    ("evaluate", evaluate.evaluate_command),
    ("separate", separate.separate),
    ("stats", stats.stats),
):
    app.command(name)(with_one_progress_display(command))
app.add_typer(push.app, name="push")

RESUMABLE_COMMANDS = ("build", "train", "iterate")
"""Commands that continue where they stopped when rerun with the same arguments."""
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDELIVER_SIGNAL = signal.SIGALRM
"""Raises a stop again when Python swallowed it inside a finaliser (sent by a one-shot timer)."""
REDELIVER_DELAY = 0.001
"""Seconds until the stop is raised again: by then the hook that re-arms it has returned."""


def main(args: list[str] | None = None) -> None:
    """Run the command line; SIGINT or SIGTERM ends a command with one line and status 128 + signal (130, 143).

    Without this, Ctrl-C ended silently with 130 (typer swallows the KeyboardInterrupt) and SIGTERM, which
    torchrun sends every worker when one fails or the launcher is stopped, silently with -15. Both now
    unwind as a KeyboardInterrupt, so ``finally`` blocks run; a second signal ends the process at once.
    """
    args = sys.argv[1:] if args is None else args
    received: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_DFL)
        raise KeyboardInterrupt

    def redeliver(unraisable) -> None:
        # A stop raised while a finaliser (``__del__``) runs is swallowed by Python ("Exception ignored in"):
        # raise it again from a signal handler, once the handler runs outside this hook (see raise_again).
        # Not os.kill: its handler would run at the hook's next instruction, where a raise is swallowed again.
        if received and issubclass(unraisable.exc_type, KeyboardInterrupt):
            signal.setitimer(signal.ITIMER_REAL, REDELIVER_DELAY)
        else:
            default_unraisable_hook(unraisable)

    def raise_again(signum: int, frame: FrameType | None) -> None:
        while frame is not None:  # still inside the hook (or a finaliser calling it): try again a little later
            if frame.f_code is redeliver.__code__:
                signal.setitimer(signal.ITIMER_REAL, REDELIVER_DELAY)
                return
            frame = frame.f_back
        raise KeyboardInterrupt

    for each in STOP_SIGNALS:
        signal.signal(each, stop)
    signal.signal(REDELIVER_SIGNAL, raise_again)
    default_unraisable_hook, sys.unraisablehook = sys.unraisablehook, redeliver
    stop_with_launcher()
    try:
        app(args=args, prog_name="clearsep-data")
    except (KeyboardInterrupt, SystemExit):
        if not received:
            raise
        command = next((arg for arg in args if not arg.startswith("-")), None)
        resume = "; rerun the same command to resume" if command in RESUMABLE_COMMANDS else ""
        print(f"interrupted{resume}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Not sys.exit: CPython 3.11 remembers a KeyboardInterrupt that passed through C-evaluated code (pybind11's
        # eval) as unhandled and then ends the process by SIGINT whatever the exit code (seen as -2 under load).
        # The command's own cleanup (finally blocks, the build's lock) has run by now.
        os._exit(128 + received[0])
