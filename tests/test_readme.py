"""Every code block of README.md runs as written, after the demo it refers to (tiny: 6 clips of 1 s, one step).

``python`` blocks are executed verbatim, each in a fresh namespace. ``bash`` blocks run command by command:
``clearsep-data`` in this process (starting a Python per command would cost seconds each), anything else (the
thresholds file written with a here-document) with bash. A block that must not run here is preceded by
``<!-- readme-test: skip (why) -->``; the test requires the reason. To keep the test short, each command is run with
:data:`SMALLER` appended: click keeps an option's last value, so these shrink the work and change nothing else.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: skip \((?P<reason>[^)]*)\) -->\n)?```(?P<language>\w+)\n(?P<code>.*?)```", re.S)
SMALLER = {
    "demo-corpus": ["--clips", "6", "--eval-clips", "2", "--seconds", "1", "--sampling-rate", "8000", "--single-event-fraction", "0.5"],
    "iterate": ["--round0-steps", "1", "--train-steps", "1", "--batch-size", "1", "--segment-seconds", "0.5", "--no-progress"],
    "train": ["--steps", "1", "--batch-size", "1", "--segment-seconds", "0.5", "--eval-every", "0", "--no-progress"],
    "build": ["--no-progress"],
    "evaluate": ["--no-progress", "--no-oracle"],
    "separate": ["--no-progress"],
}
"""Options appended to each command, by command: the sizes of the demo, not of a real run."""


def blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, reason to skip or None) of every fenced block, in order."""
    return [(m["language"], m["code"], m["reason"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def commands(code: str) -> list[str]:
    """The block's commands: continuation lines joined, a here-document kept whole, comment lines dropped."""
    result, lines = [], code.replace("\\\n", " ").splitlines()
    while lines:
        line = lines.pop(0)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            body = []
            while lines and lines[0] != heredoc[1]:
                body.append(lines.pop(0))
            line = "\n".join([line, *body, lines.pop(0)])
        result.append(line)
    return result


def run_shell(command: str) -> None:
    from clearsep_data.cli import app

    words = shlex.split(command, comments=True)
    if words[0] != "clearsep-data":
        subprocess.run(["bash", "-euc", command], check=True)
        return
    result = CliRunner().invoke(app, [*words[1:], *SMALLER.get(words[1], [])])
    assert result.exit_code == 0, f"{command}\n{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    """A folder holding what `make demo` writes, made by the README's block of its two commands (returned too)."""
    folder = tmp_path_factory.mktemp("readme")
    make_demo = next(code for language, code, _ in blocks() if language == "bash" and code.endswith("demo-output/loop\n"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for command in commands(make_demo):
            run_shell(command)
    return folder, make_demo


def test_every_skipped_block_says_why():
    skipped = [(language, code) for language, code, reason in blocks() if reason is not None]
    assert all(reason.strip() for _, _, reason in blocks() if reason is not None)
    assert all(language == "bash" for language, _ in skipped)  # every Python block runs
    assert any("push dataset" in code and "--dry-run" not in code for _, code in skipped)  # the real upload


def test_readme_blocks_run(demo, monkeypatch, one_thread):
    folder, make_demo = demo
    monkeypatch.chdir(folder)
    ran = {"python": 0, "bash": 1}  # the fixture ran `make demo`'s block
    for language, code, reason in blocks():
        if reason is not None or code == make_demo:
            continue
        if language == "python":
            exec(compile(code, f"README.md python block {ran['python'] + 1}", "exec"), {"__name__": "readme"})
        elif language == "bash":
            for command in commands(code):
                run_shell(command)
        else:
            pytest.fail(f"README block in {language!r}: neither python nor bash")
        ran[language] += 1
    assert ran["python"] == 4 and ran["bash"] >= 8
    assert Path("my-thresholds.toml").is_file() and Path("tracks-strict/build.json").is_file()
    assert Path("staged-dataset/README.md").is_file() and Path("staged-model/README.md").is_file()
