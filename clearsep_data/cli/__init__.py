"""The ``clearsep-data`` command line. Each command lives in a module of its own."""

import typer

app = typer.Typer(
    name="clearsep-data",
    help="ClearSep: turn natural multi-source audio into datasets of clean single-source tracks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
from clearsep_data.cli import demo_corpus as _demo_corpus; app.command("demo-corpus")(_demo_corpus.demo_corpus)
from clearsep_data.cli import evaluate as _evaluate; app.command("evaluate")(_evaluate.evaluate)
from clearsep_data.cli import stats as _stats; app.command("stats")(_stats.stats)
from clearsep_data.cli import train as _train; app.command("train")(_train.train)
from clearsep_data.cli import push as _push; app.add_typer(_push.app, name="push")
