"""benchmarks/engine.py's null-model mode: the stand-in separator has the model's output shapes, and a null-model
build reports clips/s and every stage's milliseconds per clip."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clearsep_data import ClearSepConfig, ClearSepModel
from clearsep_data.demo_corpus import generate_demo_corpus, label_vocabulary
from clearsep_data.tracks import load_tracks

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # last: engine.py etc. shadow nothing

import engine as engine_benchmark  # noqa: E402  (a script folder, not a package)

RATE = 8000


def tiny_model() -> ClearSepModel:
    mids, names = zip(*label_vocabulary())
    config = ClearSepConfig(label_mids=list(mids), id2label=dict(enumerate(names)), sampling_rate=RATE, n_fft=256,
                            hop_length=64, channels=[8, 16], encoder_blocks=1, query_dim=16, segment_seconds=1.0)
    torch.manual_seed(0)
    return ClearSepModel(config).eval()


def test_null_separator_returns_the_model_shapes():
    model = tiny_model()
    null = engine_benchmark.NullSeparator(model.config, model.feature_extractor)
    names = list(model.config.id2label.values())
    clip = np.random.default_rng(0).standard_normal(int(1.5 * RATE)).astype(np.float32)
    for audio, queries in ((clip, names[:2]), ([clip, clip[:RATE]], [names[:3], names[:2]])):
        for tensors in ("np", "pt"):
            expected, got = model.separate(audio, queries, return_tensors=tensors), null.separate(audio, queries, return_tensors=tensors)
            if isinstance(expected, list):
                assert [(type(a), a.shape, a.dtype) for a in got] == [(type(a), a.shape, a.dtype) for a in expected]
            else:
                assert (type(got), got.shape, got.dtype) == (type(expected), expected.shape, expected.dtype)
    np.testing.assert_allclose(null.separate(clip, names[:2]).sum(0), clip, rtol=1e-6)


def test_null_model_build_reports_clips_per_second_and_stage_times(tmp_path):
    corpus = tmp_path / "corpus"
    generate_demo_corpus(corpus, clips=6, eval_clips=1, seed=2, sampling_rate=RATE, seconds=1.0)
    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    args = argparse.Namespace(repeats=1, block_size=2, batch_size=8, clips_per_batch=4)
    report = engine_benchmark.measure_null_model(corpus, model_dir, args, tmp_path)
    assert report["former_merge_ms_per_track"] > 0 and report["publish_ms_per_track"] > 0
    assert report["clips"] == 6 and report["separated_clips"] > 0 and report["clips_per_second"] > 0
    assert set(report["ms_per_clip"]) == set(engine_benchmark.NULL_STAGES)
    assert all(value > 0 for value in report["ms_per_clip"].values())
    origins = [origin for split in ("train", "rejected") for origin in load_tracks(tmp_path / "null-0-0", split)["origin"]]
    assert len(origins) == report["tracks"] and "separated" in origins


def run_gpu_check(*options: str) -> subprocess.CompletedProcess:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    return subprocess.run([sys.executable, str(script), *options], capture_output=True, text=True, timeout=300)


def test_gpu_check_smoke_run_on_cpu_reports_every_setting_beside_the_ceiling():
    """The script meant for a lent GPU runs end to end here (``--device cpu --quick``); on a CPU there is no
    utilisation to sample."""
    done = run_gpu_check("--device", "cpu", "--quick")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    runs = report["models"]["small"]["clips_per_call"]
    assert set(runs) == {"1", "2"} and all(run["clips_per_second"] > 0 and run["rounds"] >= 1 for run in runs.values())
    assert all(run["gpu_utilisation_percent"] is None for run in runs.values())
    ceiling = report["null_model_cpu_ceiling"]["clips_per_second"]
    assert ceiling > 0
    assert report["model_vs_cpu_ceiling"]["small"] == {count: round(run["clips_per_second"] / ceiling, 3) for count, run in runs.items()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run for real")
def test_gpu_check_without_a_gpu_says_so_in_one_line():
    done = run_gpu_check("--quick")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == ["error: no CUDA device here; pass --device cpu for the smoke check"]
