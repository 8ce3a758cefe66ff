"""The ``clearsep-data`` command line. Each command lives in a module of its own, which imports its
heavy dependencies (torch, datasets, transformers) inside the command so that ``--help`` stays fast."""

import os

# OpenMP threads that spin while they wait for work make torch up to 10x slower when other processes share the
# cores (measured: a training step of the small model, 2 threads on 2 busy cores, 0.8-7 s spinning, 0.4 s passive);
# passive waiting costs little on an idle machine. libgomp reads this when torch loads, so it is set before any
# command imports torch; a value in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

from clearsep_data.cli import build, demo_corpus, evaluate, iterate, push, stats, train

app = typer.Typer(
    name="clearsep-data",
    help="ClearSep: turn natural multi-source audio into datasets of clean single-source tracks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.command("demo-corpus")(demo_corpus.demo_corpus)
app.command("build")(build.build)
app.command("train")(train.train)
app.command("iterate")(iterate.iterate)
app.command("evaluate")(evaluate.evaluate)
app.command("stats")(stats.stats)
app.add_typer(push.app, name="push")
