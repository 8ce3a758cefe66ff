"""Shared fixtures: a local Hub (olah) and a tiny track dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hubserver import OlahServer, point_hub_clients_at

SAMPLING_RATE = 16000
SPEECH, BARK, SIREN = ("/m/09x0r", "Speech"), ("/m/05tny_", "Bark"), ("/m/03kmc9", "Siren")
THRESHOLDS = json.dumps({"min_re_sdr": 10.0, "max_leakage_db": -10.0})
# (label, origin, re_sdr, re_sisdr, energy_ratio, consistency_sisdr, leakage_db, predicted_si_sdr, reject_reason)
TRAIN_ROWS = [
    (SPEECH, "single_source", None, None, 0.0, None, None, None, ""),
    (SPEECH, "separated", 14.0, 13.0, -2.0, 11.0, -25.0, 12.5, ""),
    (SPEECH, "separated", 12.0, 11.5, -4.0, 9.0, -18.0, 9.0, ""),
    (BARK, "separated", 14.0, 13.0, -6.0, 8.0, -30.0, 11.0, ""),
    (BARK, "separated", 20.0, 19.0, -1.0, 15.0, None, 16.0, ""),
]
REJECTED_ROWS = [
    (BARK, "separated", 3.2, 2.0, -8.0, 4.0, -4.0, -1.5, "re_sdr 3.2 < 10; leakage_db -4.0 > -10"),
    (SIREN, "separated", 3.2, 2.0, -40.0, 1.0, -12.0, -6.0, "re_sdr 3.2 < 10"),
]


def track_rows(rows: list[tuple], split: str) -> list[dict]:
    """Rows of the track schema, each with a distinct 0.25 s tone as FLAC bytes."""
    from clearsep_data.audio import encode_flac
    from clearsep_data.tracks import QUALITY_FIELDS

    records = []
    for index, ((label, name), origin, *quality, reason) in enumerate(rows):
        time = np.arange(SAMPLING_RATE // 4) / SAMPLING_RATE
        tone = (0.2 * np.sin(2 * np.pi * (220 + 55 * index + 500 * (split == "rejected")) * time)).astype(np.float32)
        clip_id = f"{split[:3]}{index:08d}"
        records.append(
            dict(
                audio={"bytes": encode_flac(tone, SAMPLING_RATE), "path": None},
                track_id=f"{clip_id}_30000_{label.strip('/').replace('/', '_')}",
                clip_id=clip_id,
                start_seconds=30.0,
                end_seconds=40.0,
                label=label,
                label_name=name,
                clip_labels=[label] if origin == "single_source" else [label, "/m/0jbk"],
                clip_label_names=[name] if origin == "single_source" else [name, "Animal"],
                origin=origin,
                **dict(zip(QUALITY_FIELDS, quality)),
                iteration=0,
                model="" if origin == "single_source" else "clearsep/clearsep-small@abc123",
                thresholds=THRESHOLDS,
                reject_reason=reason,
            )
        )
    return records


def write_track_dataset(root: Path, train: list[tuple] = TRAIN_ROWS, rejected: list[tuple] = REJECTED_ROWS) -> Path:
    """A track dataset as the engine writes it: ``data/{split}-00000-of-00001.parquet`` + ``build.json``."""
    from datasets import Dataset

    from clearsep_data.tracks import track_features

    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("rejected", rejected)):
        if rows:
            dataset = Dataset.from_list(track_rows(rows, split), features=track_features(SAMPLING_RATE))
            dataset.to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    fingerprint = {"corpus": "demo-corpus", "iteration": 0, "model": "clearsep/clearsep-small@abc123", "thresholds": {"min_re_sdr": 10.0}}
    summary = {"clips": 8, "skipped_clips": 1, "skip_reasons": {"audio is shorter than its segment": 1}}
    (root / "build.json").write_text(json.dumps({"fingerprint": fingerprint, "summary": summary}), encoding="utf-8")
    return root


@pytest.fixture
def track_dataset(tmp_path: Path) -> Path:
    return write_track_dataset(tmp_path / "tracks")


@pytest.fixture
def one_thread():
    """Torch on one thread: tiny models run fastest so on a busy shared CPU (two spinning OpenMP threads can be 10x
    slower), and outputs compared bit for bit within one test share one thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def olah_server(tmp_path_factory):
    """An olah server, offline, serving the git repos under its ``mirror_root`` (one per test session)."""
    work = tmp_path_factory.mktemp("olah")
    server = OlahServer(work / "mirrors", work / "server").start()
    yield server
    server.stop()


@pytest.fixture
def hub(olah_server, tmp_path, monkeypatch):
    """``olah_server`` with huggingface_hub/datasets/transformers pointed at it and an empty HF cache."""
    from huggingface_hub import HfFileSystem

    point_hub_clients_at(monkeypatch, olah_server.endpoint, tmp_path / "hf_home")
    yield olah_server
    HfFileSystem.clear_instance_cache()
