"""User errors in the inputs: each ends with one ``error: ...`` line (no traceback) and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from test_corpus import SR, write_audio, write_label_files, write_segments
from test_ontology import BARK, DOG, SPEECH
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.corpus import open_corpus
from clearsep_data.ontology import Ontology, OntologyError

BOM = "\ufeff".encode()
ROWS = 'speech00001, 0.000, 1.000, "/m/09x0r"\ndogbark0001, 2.000, 3.000, "/m/0bt9lr,/m/05tny_"\n'
TOKEN = "hf_ClearSepFaultTestTokenNeverShown42"


@pytest.fixture
def corpus_dir(tmp_path):
    """An AudioSet-style folder with two clips that both become clips (no skips)."""
    root = tmp_path / "corpus"
    write_label_files(root)
    for ytid in ("speech00001", "dogbark0001"):
        write_audio(root / "audio" / f"{ytid}.flac", 1.0, rate=SR, channels=1)
    write_segments(root / "balanced_train_segments.csv", ROWS)
    return root


def error_line(result) -> str:
    """The single line a refused command prints; fails the test on a traceback or extra output."""
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def add_bom(path) -> None:
    path.write_bytes(BOM + path.read_bytes())


# --- 1. a byte-order mark ------------------------------------------------------------------------


@pytest.mark.parametrize("comment_header", [True, False], ids=["bom-on-comment", "bom-on-data-row"])
def test_csvs_with_a_byte_order_mark_read_as_without(corpus_dir, tmp_path, comment_header):
    expected = [(item.clip_id, item.labels, item.where) for item in open_corpus(str(corpus_dir))]
    bommed = tmp_path / "bommed"
    shutil.copytree(corpus_dir, bommed)
    segments = bommed / "balanced_train_segments.csv"
    if not comment_header:
        segments.write_text(ROWS, encoding="utf-8")
        expected = [(clip_id, labels, where.replace(":4", ":1").replace(":5", ":2")) for clip_id, labels, where in expected]
    for path in (segments, bommed / "class_labels_indices.csv"):
        add_bom(path)
    corpus = open_corpus(str(bommed))
    assert [(item.clip_id, item.labels, item.where) for item in corpus] == expected
    assert expected[1][1] == (DOG, BARK) and expected[0][1] == (SPEECH,)


def test_reference_manifest_with_a_byte_order_mark(tmp_path):
    from clearsep_data.benchmark_folder import REFERENCE_MANIFEST, read_reference_manifest

    manifest = tmp_path / REFERENCE_MANIFEST
    manifest.parent.mkdir()
    manifest.write_bytes(BOM + b"ytid,label,path\nspeech00001,/m/09x0r,references/speech00001/speech.flac\n")
    assert [reference.label for reference in read_reference_manifest(tmp_path)["speech00001"]] == [SPEECH]


# --- 2. a segments CSV without data rows ---------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "segments"),
    [
        (["build", "{corpus}", "{out}", "--no-progress"], "balanced_train_segments.csv"),
        (["iterate", "{corpus}", "{out}", "--no-progress"], "balanced_train_segments.csv"),
        (["evaluate", "no-model", "{corpus}", "--no-progress"], "eval_segments.csv"),
    ],
    ids=["build", "iterate", "evaluate"],
)
def test_segments_csv_without_data_rows_is_refused_naming_it(corpus_dir, tmp_path, command, segments):
    (corpus_dir / "references").mkdir()
    (corpus_dir / "references" / "manifest.csv").write_text("ytid,label,path\n", encoding="utf-8")
    write_segments(corpus_dir / segments, "YTID, start_seconds, end_seconds, positive_labels\n\n")
    args = [arg.format(corpus=corpus_dir, out=tmp_path / "out") for arg in command]
    line = error_line(CliRunner().invoke(app, args))
    assert f"{corpus_dir / segments} has no data rows" in line
    assert not (tmp_path / "out").exists()


# --- 3. an ontology with a cycle -----------------------------------------------------------------


def test_ontology_cycle_is_refused_when_loaded_naming_the_file_and_the_loop(corpus_dir, tmp_path):
    path = corpus_dir / "ontology.json"
    entries = json.loads(path.read_text(encoding="utf-8"))
    next(entry for entry in entries if entry["id"] == BARK)["child_ids"] = [DOG]  # Dog -> Bark -> Dog
    path.write_text(json.dumps(entries), encoding="utf-8")
    line = error_line(CliRunner().invoke(app, ["build", str(corpus_dir), str(tmp_path / "out"), "--no-progress"]))
    assert f"{path}: child_ids form a cycle: {DOG} -> {BARK} -> {DOG}" in line


def test_ontology_class_that_is_its_own_child_is_a_cycle():
    with pytest.raises(OntologyError, match="cycle: /m/1 -> /m/1"):
        Ontology.from_entries([{"id": "/m/1", "name": "Loop", "child_ids": ["/m/1"]}], source="o.json")


# --- 4. a local corpus path with a typo ----------------------------------------------------------


@pytest.mark.parametrize("source", ["./demo-ouput/corpus", "/tmp/nope/corpus", "runs/corpsu", "démo/corpus"])
def test_missing_corpus_folder_is_reported_at_once_not_looked_up_on_the_hub(tmp_path, monkeypatch, source):
    import clearsep_data.engine  # noqa: F401  (imported up front: only the command itself is timed)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # "runs/corpsu" has the form of a Hub id, but runs/ is a local folder
    started = time.monotonic()
    line = error_line(CliRunner().invoke(app, ["build", source, str(tmp_path / "out"), "--no-progress"]))
    assert time.monotonic() - started < 2
    assert f"corpus folder {source} does not exist" in line


# --- 5. push to an endpoint that cannot be reached -----------------------------------------------


def test_push_to_an_unreachable_endpoint_names_it_and_never_the_token(track_dataset, monkeypatch, caplog):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # what HF_ENDPOINT sets at import
    caplog.set_level(logging.DEBUG)
    args = ["push", "dataset", str(track_dataset), "--repo-id", "a/b", "--token", TOKEN]
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    assert time.monotonic() - started < 20  # staging included; the refused connection itself is not retried
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: upload failed: could not reach the Hub at http://127.0.0.1:9 (")
    assert "Traceback" not in result.output and len(result.output.splitlines()) < 40  # the staged tree, then the line
    assert TOKEN not in result.output and TOKEN not in caplog.text


# --- 6. a launch for several GPUs on a machine without one ---------------------------------------

MULTI_GPU_LAUNCH = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "ACCELERATE_MIXED_PRECISION": "no"}
"""What ``accelerate launch --multi_gpu --num_processes 2`` sets in the first process (among others)."""


@pytest.fixture
def no_gpu(monkeypatch):
    """No GPU, and no process group: a process that got as far as creating one fails the test (rather than hang)."""
    import torch
    from accelerate.state import PartialState

    def no_process_group(*args, **kwargs):
        raise AssertionError("a process group was set up before the launch was checked")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(PartialState, "__init__", no_process_group)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    for name, value in MULTI_GPU_LAUNCH.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("command", [["build", "{corpus}", "{out}"], ["train", "{corpus}", "-o", "{out}"], ["iterate", "{corpus}", "{out}"]])
def test_multi_gpu_launch_without_a_gpu_is_refused_up_front(corpus_dir, tmp_path, no_gpu, command):
    args = [arg.format(corpus=corpus_dir, out=tmp_path / "out") for arg in command]
    line = error_line(CliRunner().invoke(app, [*args, "--no-progress"]))
    assert line == (
        "error: launched for several GPUs but no GPU is available; on CPU set ACCELERATE_USE_CPU=1 "
        "(or pass --cpu instead of --multi_gpu to accelerate launch)"
    )


@pytest.mark.parametrize(
    "environment",
    [{"ACCELERATE_USE_CPU": "1"}, {"ACCELERATE_MIXED_PRECISION": None}, {"WORLD_SIZE": "1"}],
    ids=["cpu-asked-for", "torchrun", "one-process"],
)
def test_cpu_launches_pass_the_check(no_gpu, monkeypatch, environment):
    from clearsep_data.cli.launch import check_launch

    for name, value in environment.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    check_launch()


# --- 7. SIGINT and SIGTERM -----------------------------------------------------------------------


def interrupt(args: list[str], started, signum: int, tmp_path) -> tuple[int, str]:
    """Run ``python -m clearsep_data ARGS``, send ``signum`` once ``started()`` is true; its status and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    with open(tmp_path / "stderr.txt", "w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "clearsep_data", *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while not started() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert process.poll() is None, "the command ended before it could be interrupted"
        process.send_signal(signum)
        status = process.wait(timeout=60)
        stderr.seek(0)
        return status, stderr.read()


def test_sigint_ends_a_command_with_one_line_and_130(tmp_path):
    out = tmp_path / "demo"
    args = ["demo-corpus", str(out), "--clips", "5000", "--seconds", "1"]
    status, stderr = interrupt(args, lambda: (out / "audio").is_dir() and any((out / "audio").iterdir()), signal.SIGINT, tmp_path)
    assert (status, stderr.strip()) == (130, "interrupted")


def test_sigterm_ends_a_build_with_one_line_saying_how_to_resume_and_143(tmp_path):
    from clearsep_data.demo_corpus import generate_demo_corpus

    corpus, out = tmp_path / "corpus", tmp_path / "out"
    generate_demo_corpus(corpus, clips=300, eval_clips=0, seconds=1.0, single_event_fraction=1.0)
    args = ["build", str(corpus), str(out), "--block-size", "4", "--no-progress"]
    status, stderr = interrupt(args, (out / ".clearsep-build" / "params.json").exists, signal.SIGTERM, tmp_path)
    assert (status, stderr.strip()) == (143, "interrupted; rerun the same command to resume")


STOP_IN_A_FINALISER = '''
import os, signal, sys, time
import clearsep_data.cli as cli

class StopsInAFinaliser:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # its KeyboardInterrupt is raised here, and Python swallows it
        sum(range(1000))

def command(*args, **kwargs):
    StopsInAFinaliser()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sum(range(1000))
    print("ran to the end", file=sys.stderr)

cli.app = command
cli.main(["build"])
'''


def test_a_stop_that_a_finaliser_swallowed_still_ends_the_command(tmp_path):
    """The race CI hit once (a SIGTERM inside regex's ``Group.__del__``), made certain: the stop is raised again
    once the finaliser and the unraisable hook have returned."""
    script = tmp_path / "stop_in_a_finaliser.py"
    script.write_text(STOP_IN_A_FINALISER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr.strip()) == (143, "interrupted; rerun the same command to resume")
