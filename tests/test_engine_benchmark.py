"""benchmarks/engine.py's null-model mode: the stand-in separator has the model's output shapes, and a null-model
build reports clips/s and every stage's milliseconds per clip."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
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
    null = engine_benchmark.NullSeparator(model.config)
    names = list(model.config.id2label.values())
    clip = np.random.default_rng(0).standard_normal(int(1.5 * RATE)).astype(np.float32)
    for audio, queries in ((clip, names[:2]), ([clip, clip[:RATE]], [names[:3], names[:2]])):
        expected, got = model.separate(audio, queries), null.separate(audio, queries)
        if isinstance(expected, list):
            assert [a.shape for a in got] == [a.shape for a in expected] and all(a.dtype == np.float32 for a in got)
        else:
            assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_allclose(null.separate(clip, names[:2]).sum(0), clip, rtol=1e-6)


def test_null_model_build_reports_clips_per_second_and_stage_times(tmp_path):
    corpus = tmp_path / "corpus"
    generate_demo_corpus(corpus, clips=6, eval_clips=1, seed=2, sampling_rate=RATE, seconds=1.0)
    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    args = argparse.Namespace(repeats=1, block_size=2, batch_size=8)
    report = engine_benchmark.measure_null_model(corpus, model_dir, args, tmp_path)
    assert report["former_merge_ms_per_track"] > 0 and report["publish_ms_per_track"] > 0
    assert report["clips"] == 6 and report["separated_clips"] > 0 and report["clips_per_second"] > 0
    assert set(report["ms_per_clip"]) == set(engine_benchmark.NULL_STAGES)
    assert all(value > 0 for value in report["ms_per_clip"].values())
    origins = [origin for split in ("train", "rejected") for origin in load_tracks(tmp_path / "null-0-0", split)["origin"]]
    assert len(origins) == report["tracks"] and "separated" in origins
