"""What the command line prints: one progress display, tables within 80 columns, a pasteable load hint, --version."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.loop import RoundResult
from conftest import REJECTED_ROWS, SIREN, write_track_dataset

NARROW = {"COLUMNS": "80"}


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"clearsep-data {version('clearsep-data')}"


def test_commands_silence_the_libraries_bars_with_their_own_switches(monkeypatch):
    """Every command that can show a library's tqdm bar runs with datasets', transformers' and huggingface_hub's bars
    off (their global switches), so our rich bar is the only display and --no-progress leaves none."""
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    from clearsep_data.cli import progress

    datasets.enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()
    states = []
    monkeypatch.setattr("clearsep_data.stats.compute_stats", lambda dataset: states.append(progress_states()) or 1 / 0)
    CliRunner().invoke(app, ["stats", "some-folder"])
    assert states == [(False, False, True)]


def progress_states() -> tuple[bool, bool, bool]:
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    return (
        datasets.is_progress_bar_enabled(),
        transformers.utils.logging.is_progress_bar_enabled(),
        huggingface_hub.utils.are_progress_bars_disabled(),
    )


def round_result(index: int, tmp_path: Path) -> RoundResult:
    return RoundResult(
        round=index, thresholds=None, single_source_tracks=30, separated_accepted=360 * index, separated_rejected=280 * index,
        mean_re_sdr_accepted=None if index == 0 else 14.36 + index, eval_si_sdri=9.31 + index, eval_sdri=9.0,
        model=str(tmp_path / "my loop" / f"round-{index}" / "model"), tracks=str(tmp_path / "my loop" / f"round-{index}" / "tracks"),
    )  # fmt: skip


def test_iterate_prints_each_round_once_in_80_columns_and_a_pasteable_hint(monkeypatch, tmp_path):
    def fake_loop(config, on_round):
        results = [round_result(index, tmp_path) for index in range(config.rounds + 1)]
        for result in results:
            on_round(result)
        return results

    monkeypatch.setattr("clearsep_data.loop.run_loop", fake_loop)
    result = CliRunner().invoke(app, ["iterate", "corpus", str(tmp_path / "my loop"), "--no-progress"], env=NARROW)
    assert result.exit_code == 0, result.output
    lines = result.output.split("Summary:")[0].splitlines()
    assert max(map(len, lines)) <= 80  # the paths after it are never wrapped
    assert sum("single-source" in line for line in lines) == 1  # one header, its words whole
    rows = [line.split() for line in lines if line.split()[:2] in (["0", "30"], ["1", "30"], ["2", "30"])]
    assert [row[0] for row in rows] == ["0", "1", "2"] and rows[1][-2:] == ["15.36", "10.31"]
    hint = result.output.split("Load the result (Python):\n", 1)[1]
    assert f'load_dataset("{tmp_path}/my loop/round-2/tracks", split="train")' in hint
    namespace = {}
    monkeypatch.setattr("datasets.load_dataset", lambda path, split: (path, split))
    monkeypatch.setattr("clearsep_data.modeling.ClearSepModel.from_pretrained", lambda path: path)
    exec(compile(hint, "hint", "exec"), namespace)  # pasteable: runs as printed
    assert namespace["tracks"] == (str(tmp_path / "my loop" / "round-2" / "tracks"), "train")
    assert namespace["model"] == str(tmp_path / "my loop" / "round-2" / "model")


def test_stats_wraps_a_long_reject_reason_between_words(tmp_path):
    reason = "re_sdr 3.2 < 10; another track of the clip is near-silent (-41.3 dB): it may hold that event"
    dataset = write_track_dataset(tmp_path / "tracks", rejected=[*REJECTED_ROWS, (SIREN, "separated", 3.2, 2.0, -3.0, 1.0, None, -2.0, reason)])
    result = CliRunner().invoke(app, ["stats", str(dataset)], env=NARROW)
    assert result.exit_code == 0, result.output
    table = result.output.split("Reject reasons", 1)[1].split("Provenance", 1)[0]
    assert max(map(len, table.splitlines())) <= 80
    words = " ".join(line.split("  ")[0].strip() for line in table.splitlines()[4:] if line.strip())
    assert "another track of the clip is near-silent" in words and "it may hold that event" in words
    assert "41.3" not in table  # the track's own value is not part of the counted reason


HELP_SCRIPT = """
import sys
from clearsep_data.cli import app
for command in ("build", "train", "iterate", "evaluate", "stats", "push dataset"):
    try:
        app([*command.split(), "--help"])
    except SystemExit:
        pass
assert "datasets" not in sys.modules and "transformers" not in sys.modules, "a --help imported datasets/transformers"
"""


def test_help_does_not_load_the_libraries():
    """The libraries' bars are silenced when a command runs, not when its --help is asked for (which stays fast)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
