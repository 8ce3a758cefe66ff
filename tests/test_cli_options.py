"""The options of ``train`` and ``build`` are made from the fields of TrainingArguments and BuildConfig
(clearsep_data/cli/options.py): each field on the command line is an option with the field's default and help,
and a value given on the command line reaches the dataclass."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from clearsep_data.build_config import BuildConfig
from clearsep_data.cli import app
from clearsep_data.cli.options import CONFIG, config_command, field_default, generated_fields, split_values
from clearsep_data.training.arguments import TrainingArguments

COMMANDS = [("train", TrainingArguments), ("build", BuildConfig)]


def options_of(command: str) -> dict:
    return {param.name: param for param in get_command(app).commands[command].params}


@pytest.mark.parametrize("command, config_cls", COMMANDS)
def test_every_field_for_the_cli_is_an_option_with_its_default_and_help(command, config_cls):
    options = options_of(command)
    fields = generated_fields(config_cls)
    assert len(fields) > 10
    for f in fields:
        option = options[f.name]
        assert option.default == field_default(f), f.name
        assert option.help == f.metadata["help"], f.name
        assert getattr(option, "rich_help_panel", None) == f.metadata.get("panel"), f.name
    # The fields given in another shape name the command's own options; the others stay off the command line.
    for f in dataclasses.fields(config_cls):
        cli = f.metadata.get("cli", True)
        if isinstance(cli, tuple):
            assert set(cli) <= set(options), f.name
        elif cli is False:
            assert f.name not in options


@pytest.mark.parametrize("command, config_cls", COMMANDS)
def test_help_shows_the_generated_options(command, config_cls):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for f in generated_fields(config_cls):
        flag = f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))[0].split("/")[0]
        assert flag in result.output, f.name
        assert f.metadata["help"] in result.output, f.name


def test_loss_default_is_the_models():
    from clearsep_data.modeling.losses import DEFAULT_LOSS

    assert TrainingArguments.__dataclass_fields__["loss"].default == DEFAULT_LOSS


def test_command_line_values_reach_training_arguments(monkeypatch, tmp_path):
    import clearsep_data.training

    seen = []

    def fake_train(args):
        seen.append(args)
        raise ValueError("stop here")

    monkeypatch.setattr(clearsep_data.training, "train", fake_train, raising=False)
    argv = ["train", "tracks-a", "tracks-b", "-o", str(tmp_path), "--steps", "7", "--lr", "0.02", "--no-resume",
            "--natural-rate", "0.5", "--natural-corpus", "corpus", "--queries", "3", "--snr-low", "-2", "--snr-high", "4",
            "--model-config", "channels=[8,16]", "--quality", "sample", "--warmup-steps", "3"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1 and "stop here" in result.output
    [args] = seen
    assert args.datasets == ["tracks-a", "tracks-b"] and args.output_dir == str(tmp_path)
    assert (args.steps, args.lr, args.resume, args.natural_rate, args.natural_corpus) == (7, 0.02, False, 0.5, "corpus")
    assert (args.queries_per_mixture, args.snr_db, args.model_config) == (3, (-2.0, 4.0), {"channels": [8, 16]})
    assert (args.quality, args.warmup_steps, args.batch_size, args.segment_seconds) == ("sample", 3, 8, 4.0)


def test_command_line_values_reach_build_config(monkeypatch, tmp_path):
    import clearsep_data.engine

    seen = []

    def fake_build(config, overwrite, progress):
        seen.append((config, overwrite, progress))
        raise ValueError("stop here")

    monkeypatch.setattr(clearsep_data.engine, "build", fake_build)
    argv = ["build", "corpus", str(tmp_path), "--bf16", "--block-size", "4", "--split", "eval",
            "--min-re-sdr", "3", "--overwrite", "--no-progress", "--no-keep-rejected"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1 and "stop here" in result.output
    [(config, overwrite, progress)] = seen
    assert (config.corpus, config.output_dir, config.use_bf16, config.block_size, config.split) == ("corpus", tmp_path, True, 4, "eval")
    assert (config.thresholds.min_re_sdr, config.keep_rejected) == (3.0, False)
    assert (overwrite, progress) == (True, False)


def test_the_adapter_maps_typer_values_to_the_config_dict():
    @dataclasses.dataclass
    class Settings:
        size: int = dataclasses.field(default=3, metadata={"help": "A size."})
        name: str | None = dataclasses.field(default=None, metadata={"help": "A name.", "panel": "Names"})
        pair: tuple[int, int] = dataclasses.field(default=(0, 1), metadata={"help": "A pair.", "cli": ("low",)})
        hidden: float = dataclasses.field(default=0.5, metadata={"cli": False})

    received = {}

    @config_command(Settings)
    def command(*, first: str, low: int = 0, config: dict, last: bool = False) -> None:
        received.update(first=first, low=low, config=config, last=last)

    assert list(command.__signature__.parameters) == ["first", "size", "name", "low", "last"]
    assert command.config_fields == ["size", "name"]
    assert split_values({"first": "a", "size": 4, "name": None, "low": 2, "last": True}, command.config_fields) == {
        "first": "a", "low": 2, "last": True, CONFIG: {"size": 4, "name": None}}
    cli = typer.Typer()
    cli.command()(command)
    cli.command("other")(lambda: None)
    result = CliRunner().invoke(cli, ["command", "x", "--size", "5", "--low", "1"])
    assert result.exit_code == 0, result.output
    assert received == {"first": "x", "low": 1, "config": {"size": 5, "name": None}, "last": False}


def test_a_field_on_the_cli_needs_help():
    @dataclasses.dataclass
    class Settings:
        size: int = 3

    with pytest.raises(TypeError, match="no metadata\\['help'\\]"):
        config_command(Settings)(lambda *, config: None)


def test_iterate_trains_with_a_typed_template_checked_before_round_0(tmp_path):
    from clearsep_data.demo_corpus import generate_demo_corpus
    from clearsep_data.loop import DEFAULT_TRAINING, LoopConfig, round_arguments, round_training

    options = options_of("iterate")
    assert {name: options[name].default for name in DEFAULT_TRAINING} == DEFAULT_TRAINING
    assert options["batch_size"].default == TrainingArguments.__dataclass_fields__["batch_size"].default
    config = LoopConfig(corpus=str(tmp_path), output_dir=tmp_path / "loop", training=round_training(batch_size=2, model_config={"channels": [8]}))
    round1 = round_arguments(config, 1, tmp_path / "tracks", tmp_path / "model", init="previous")
    assert (round1.batch_size, round1.segment_seconds, round1.lr, round1.model_config) == (2, 2.0, 3e-3, {})
    assert config.training.datasets != round1.datasets  # the template is copied, not changed
    assert round1.eval_benchmark is None  # no valid split: the round scores mixtures of its held-out tracks
    (tmp_path / "valid_segments.csv").write_text("# a corpus with a validation split\n")
    scored = round_arguments(config, 0, tmp_path / "tracks", tmp_path / "model", init=None)
    assert (scored.eval_benchmark, scored.eval_split) == (str(tmp_path), "valid")
    with pytest.raises(TypeError, match="TrainingArguments template"):
        LoopConfig(corpus=str(tmp_path), output_dir=tmp_path, training={"lr": 1e-3})

    corpus = tmp_path / "corpus"
    generate_demo_corpus(corpus, clips=4, eval_clips=0, seed=1, sampling_rate=8000, seconds=1.0)
    result = CliRunner().invoke(app, ["iterate", str(corpus), str(tmp_path / "out"), "--lr", "-1", "--no-progress"])
    assert result.exit_code == 1 and "lr must be positive" in result.output
    assert not (tmp_path / "out" / "round-0").exists()  # refused before round 0's build
