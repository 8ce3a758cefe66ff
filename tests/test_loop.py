"""A tiny ClearSep loop end to end, and its resumption after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clearsep_data.demo_corpus import generate_demo_corpus
from clearsep_data.filtering import Thresholds
from clearsep_data.loop import LoopConfig, round_training, run_loop
from hubserver import free_port

TINY_MODEL = {"channels": [8, 16], "query_dim": 16, "n_fft": 256, "hop_length": 64, "sampling_rate": 8000, "encoder_blocks": 1}
TRAINING = {"batch_size": 2, "segment_seconds": 1.0, "eval_mixtures": 4, "model_config": TINY_MODEL}
LENIENT = dict(min_re_sdr=-100, min_re_sisdr=-100, min_energy_ratio=-60, min_consistency_sisdr=-100, max_leakage_db=100)

LOOP_SCRIPT = """
import sys
from pathlib import Path
from clearsep_data.filtering import Thresholds
from clearsep_data.loop import LoopConfig, round_training, run_loop
run_loop(LoopConfig(corpus=sys.argv[1], output_dir=Path(sys.argv[2]), rounds=2, train_steps=3, threshold_step=2.0,
                    thresholds=Thresholds(**{lenient}), training=round_training(**{training}), progress=False))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loop-corpus")
    generate_demo_corpus(root, clips=10, eval_clips=2, seed=5, sampling_rate=8000, seconds=1.5)
    return root


def loop_config(corpus: Path, output: Path, **options) -> LoopConfig:
    settings = dict(rounds=2, train_steps=3, thresholds=Thresholds(**LENIENT), threshold_step=2.0, training=round_training(**TRAINING), progress=False)
    return LoopConfig(corpus=str(corpus), output_dir=output, **settings | options)


def test_two_rounds_produce_models_datasets_and_a_summary(corpus, tmp_path):
    results = run_loop(loop_config(corpus, tmp_path / "loop"))
    assert [result.round for result in results] == [0, 1, 2]
    round0, round1, round2 = results
    assert round0.separated_accepted == 0 and round0.single_source_tracks == 4  # 40% of 10 clips
    assert round1.separated_accepted > 0 and round1.single_source_tracks == 4
    assert round2.thresholds["min_re_sdr"] == round1.thresholds["min_re_sdr"] + 2.0
    for result in results:
        assert (Path(result.model) / "model.safetensors").exists()
        evaluation = (tmp_path / "loop" / f"round-{result.round}" / "eval.json").read_text()
        assert result.eval_si_sdri is not None and json.loads(evaluation)
        assert (Path(result.model) / "eval.json").read_text() == evaluation  # the model card's evaluation
    round1_args = json.loads((tmp_path / "loop" / "round-1" / "model" / "training_args.json").read_text())
    assert str(tmp_path / "loop" / "round-0" / "model") in json.dumps(round1_args)  # initialised from the previous round
    assert round1_args["natural_rate"] == 0.0 and round1_args["natural_corpus"] is None  # off by default
    summary = json.loads((tmp_path / "loop" / "summary.json").read_text())
    assert [row["round"] for row in summary] == [0, 1, 2]
    assert (tmp_path / "loop" / "rounds.png").stat().st_size > 1000


def test_natural_mixtures_are_an_option_of_later_rounds(corpus, tmp_path):
    run_loop(loop_config(corpus, tmp_path / "loop", natural_rate=0.5, rounds=1))
    round1_args = json.loads((tmp_path / "loop" / "round-1" / "model" / "training_args.json").read_text())
    assert round1_args["natural_rate"] == 0.5 and round1_args["natural_corpus"] == str(corpus)
    assert round1_args["provenance"]["natural_clips"] > 0
    round0_args = json.loads((tmp_path / "loop" / "round-0" / "model" / "training_args.json").read_text())
    assert round0_args["natural_rate"] == 0.0  # round 0 has no accepted tracks to serve as targets


def test_killed_loop_resumes_where_it_stopped(corpus, tmp_path):
    output = tmp_path / "loop"
    script = LOOP_SCRIPT.format(lenient=LENIENT, training=TRAINING)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script, str(corpus), str(output)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = output / "round-1" / "tracks" / "build.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not marker.exists() and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists() and not (output / "round-2").exists()
    round0_weights = output / "round-0" / "model" / "model.safetensors"
    before = round0_weights.stat().st_mtime_ns
    results = run_loop(loop_config(corpus, output))
    assert [result.round for result in results] == [0, 1, 2]
    assert round0_weights.stat().st_mtime_ns == before  # finished stages are not redone
    assert all((Path(result.model) / "model.safetensors").exists() for result in results)


def test_the_loop_runs_under_two_processes(corpus, tmp_path):
    """Each round builds, trains and evaluates in one launch: training twice must keep the process group."""
    script = tmp_path / "loop.py"
    script.write_text(LOOP_SCRIPT.format(lenient=LENIENT, training=TRAINING))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = subprocess.run([*launcher, str(script), str(corpus), str(tmp_path / "loop")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "loop" / "summary.json").read_text())
    assert [row["round"] for row in summary] == [0, 1, 2] and all(row["eval_si_sdri"] is not None for row in summary)
