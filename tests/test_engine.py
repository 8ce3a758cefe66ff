"""The data engine end to end: a demo corpus, a small random ClearSepModel, real parquet output."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from datasets import load_dataset
from huggingface_hub import DatasetCard

from clearsep_data import ClearSepConfig, ClearSepModel
from clearsep_data.block_writer import encode_audio
from clearsep_data.corpus import Clip
from clearsep_data.demo_corpus import demo_ontology, generate_demo_corpus, label_vocabulary
from clearsep_data.engine import BuildConfig, BuildError, build
from clearsep_data.filtering import Thresholds
from clearsep_data.quality_predictor import QualityPredictor
from clearsep_data.track_maker import Prepared, TrackMaker
from clearsep_data.tracks import QUALITY_FIELDS, load_tracks, track_features
from hubserver import free_port

RATE = 8000
SECONDS = 2.0
# Lenient thresholds so that an untrained model still yields both accepted and rejected tracks.
LENIENT = Thresholds(min_re_sdr=-100.0, min_re_sisdr=-100.0, min_energy_ratio=-60.0, min_consistency_sisdr=-100.0, max_leakage_db=100.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    generate_demo_corpus(root, clips=16, eval_clips=2, seed=3, sampling_rate=RATE, seconds=SECONDS)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    mids, names = zip(*label_vocabulary())
    config = ClearSepConfig(
        label_mids=list(mids),
        id2label=dict(enumerate(names)),
        sampling_rate=RATE,
        n_fft=256,
        hop_length=64,
        channels=[8, 16],
        encoder_blocks=1,
        query_dim=16,
        segment_seconds=SECONDS,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    ClearSepModel(config).save_pretrained(path)
    return path


def read_split(output: Path, split: str) -> list[dict]:
    rows = []
    for shard in sorted((output / "data").glob(f"{split}-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


def run_cli(*args: str, env_extra: dict | None = None, launcher: list[str] | None = None, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", **(env_extra or {})}
    command = (launcher or [sys.executable]) + ["-m", "clearsep_data", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def build_args(corpus: Path, model: Path, output: Path, *extra: str, block_size: int = 3) -> list[str]:
    thresholds = ["--min-re-sdr", "-100", "--min-re-sisdr", "-100", "--min-energy-ratio", "-60"]
    return ["build", str(corpus), str(output), "--model", str(model), "--block-size", str(block_size), *thresholds,
            "--min-consistency-sisdr", "-100", "--max-leakage-db", "100", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference_build(corpus, model_dir, tmp_path_factory) -> Path:
    """One uninterrupted single-process build through the command line."""
    output = tmp_path_factory.mktemp("single") / "tracks"
    result = run_cli(*build_args(corpus, model_dir, output))
    assert result.returncode == 0, result.stderr
    return output


def test_build_writes_a_loadable_dataset_with_quality_fields(reference_build, corpus, model_dir, tmp_path):
    summary = json.loads((reference_build / "build.json").read_text())["summary"]
    assert summary["clips"] == 16 and summary["skipped_clips"] == 0
    card = (reference_build / "README.md").read_text()
    assert str(DatasetCard(card)) == card  # written without the card's YAML round trip, the same text
    assert summary["single_source_clips"] + summary["separated_clips"] == 16
    # As users load it (a fresh cache: datasets keys local folders' caches by folder name, see tracks.py).
    dataset = load_dataset(str(reference_build), cache_dir=str(tmp_path / "cache"))
    assert dataset["train"].features == track_features(RATE)
    assert len(dataset["train"]) == summary["accepted_tracks"]
    separated = dataset["train"].filter(lambda row: row["origin"] == "separated")
    row = separated[0]
    samples = row["audio"].get_all_samples()
    assert samples.sample_rate == RATE and samples.data.shape[-1] == int(RATE * SECONDS)
    assert row["model"].startswith(f"{model_dir}@sha256:")
    for field in QUALITY_FIELDS:
        assert np.isfinite(row[field])
    # The shipped predictor's reading of the row's own fields (stored as float32).
    assert row["predicted_si_sdr"] == pytest.approx(QualityPredictor.load().predict_table({k: [v] for k, v in row.items()})[0], abs=1e-3)
    # Every multi-event clip is separated once per mutually exclusive label: Dog+Bark is one query.
    segments = {line.split(",")[0]: line for line in (corpus / "balanced_train_segments.csv").read_text().splitlines()[3:]}
    for clip_id in set(separated["clip_id"]):
        labels = [r["label"] for r in read_split(reference_build, "train") + read_split(reference_build, "rejected") if r["clip_id"] == clip_id]
        assert len(labels) == len(set(labels)) >= 2
        assert not ({"/m/0bt9lr", "/m/05tny_"} <= set(labels)), segments[clip_id]
    streamed = next(iter(load_dataset(str(reference_build), split="train", streaming=True)))
    assert streamed["track_id"] == dataset["train"][0]["track_id"]
    assert load_tracks(reference_build)["track_id"] == dataset["train"]["track_id"]
    assert set(dataset) == {"train"}  # the default config holds the accepted tracks only (rejected: a config of its own)


def test_clip_audio_of_single_source_tracks_is_the_clip(reference_build, corpus):
    row = next(r for r in read_split(reference_build, "train") if r["origin"] == "single_source")
    track, rate = sf.read(io.BytesIO(row["audio"]["bytes"]), dtype="float32")
    clip, clip_rate = sf.read(corpus / "audio" / f"{row['clip_id']}.flac", dtype="float32")
    assert rate == clip_rate == RATE
    np.testing.assert_allclose(track, clip, atol=2 / 32768)


def test_strict_thresholds_move_tracks_to_the_rejected_split(corpus, model_dir, tmp_path):
    config = BuildConfig(corpus=str(corpus), output_dir=tmp_path / "strict", model=str(model_dir), block_size=4,
                         thresholds=Thresholds(min_re_sdr=200))
    summary = build(config, progress=False)
    rejected = read_split(tmp_path / "strict", "rejected")
    assert summary.rejected_tracks == len(rejected) > 0
    assert all(row["reject_reason"].startswith("re_sdr") for row in rejected)
    assert all(row["origin"] == "single_source" for row in read_split(tmp_path / "strict", "train"))
    # A rerun with other settings refuses to mix them into the finished build.
    config.thresholds = Thresholds(min_re_sdr=100)
    with pytest.raises(BuildError, match="other settings"):
        build(config, progress=False)


def test_two_processes_give_the_same_dataset_as_one(corpus, model_dir, reference_build, tmp_path):
    output = tmp_path / "two"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = run_cli(*build_args(corpus, model_dir, output), launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    for split in ("train", "rejected"):
        assert read_split(output, split) == read_split(reference_build, split)
    # Each process wrote its own blocks' shards (one per block of 3 clips); they load as one dataset, in corpus order.
    assert len(list((output / "data").glob("train-*.parquet"))) == 6
    assert load_tracks(output).to_list() == load_tracks(reference_build).to_list()
    assert (output / "skips.jsonl").read_text() == (reference_build / "skips.jsonl").read_text()


def test_killed_build_with_workers_resumes_to_the_uninterrupted_result(corpus, model_dir, reference_build, tmp_path):
    """kill -9 of a build that decodes in 2 DataLoader workers and writes in 2 processes: none of them outlives it or
    keeps the folder locked, and the rerun (with workers) writes what the uninterrupted build without workers wrote."""
    output = tmp_path / "resumed"
    args = build_args(corpus, model_dir, output, "--num-workers", "2")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    process = subprocess.Popen([sys.executable, "-m", "clearsep_data", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = output / ".clearsep-build"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(work.glob("block-*"))) < 2:
        time.sleep(0.05)
    helpers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = len(list(work.glob("block-*")))
    assert 2 <= committed < 6, "the build should have been killed half-way"
    assert len(helpers) >= 4, "2 decoding workers and 2 writers"
    result = run_cli(*args)  # at once: the workers must not hold the folder's lock
    assert result.returncode == 0, result.stderr
    for split in ("train", "rejected"):
        rows = read_split(output, split)
        assert rows == read_split(reference_build, split)
        assert len({row["track_id"] for row in rows}) == len(rows)
    assert not work.exists()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(map(is_running, helpers)):
        time.sleep(0.1)
    survivors = [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")[:120] for pid in helpers if is_running(pid)]
    assert not survivors, f"helpers outlived their build: {survivors}"
    rerun = run_cli(*build_args(corpus, model_dir, output))  # a finished build is left as it is
    assert rerun.returncode == 0 and read_split(output, "train") == read_split(reference_build, "train")


def test_killed_launcher_stops_its_workers_and_one_process_resumes_two(corpus, model_dir, reference_build, tmp_path):
    """kill -9 of torchrun: its workers stop on their own; the build resumed by one process (same per-process
    thread count, same machine) is bit-identical to the uninterrupted one."""
    output = tmp_path / "two-then-one"
    args = build_args(corpus, model_dir, output, block_size=1)  # 16 blocks: much is left to do when the launcher dies
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    process = subprocess.Popen(launcher + ["-m", "clearsep_data", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = output / ".clearsep-build"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(work.glob("block-*"))) < 2:
        time.sleep(0.05)
    workers = [int(pid) for pid in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert len(workers) == 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(map(is_running, workers)):
        time.sleep(0.1)
    assert not any(map(is_running, workers)), "workers outlived their launcher"
    assert len(list(work.glob("block-*"))) < 16 and not (output / "build.json").exists(), "stopped half-way"
    threads = run_cli(*args, env_extra={"OMP_NUM_THREADS": "2"})
    assert threads.returncode == 1 and "threads_per_process 1 then, 2 now" in threads.stderr
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    for split in ("train", "rejected"):
        assert read_split(output, split) == read_split(reference_build, split)


def assert_same_tracks_within_rounding(ours: list[dict], theirs: list[dict]) -> None:
    """The same tracks in the same order, audio within 1 LSB of 16-bit audio and quality fields within 1e-3 dB."""
    assert [row["track_id"] for row in ours] == [row["track_id"] for row in theirs]
    for mine, reference in zip(ours, theirs):
        assert {key: value for key, value in mine.items() if key not in ("audio", "reject_reason", *QUALITY_FIELDS)} == {
            key: value for key, value in reference.items() if key not in ("audio", "reject_reason", *QUALITY_FIELDS)}
        for field in QUALITY_FIELDS:
            if reference[field] is not None:
                assert abs(mine[field] - reference[field]) <= 1e-3, (field, mine["track_id"])
        audio = sf.read(io.BytesIO(mine["audio"]["bytes"]), dtype="int16")[0].astype(np.int32)
        expected = sf.read(io.BytesIO(reference["audio"]["bytes"]), dtype="int16")[0].astype(np.int32)
        assert np.abs(audio - expected).max() <= 1, mine["track_id"]


def test_builds_under_other_thread_counts_agree_within_rounding(corpus, model_dir, reference_build, tmp_path):
    """Thread counts pick other kernels: not bit-identical, but within 1 LSB of 16-bit audio and 1e-3 dB."""
    output = tmp_path / "two-threads"
    result = run_cli(*build_args(corpus, model_dir, output), env_extra={"OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    for split in ("train", "rejected"):
        assert_same_tracks_within_rounding(read_split(output, split), read_split(reference_build, split))


def test_clips_per_batch_gives_the_same_dataset_within_rounding_and_resumes(corpus, model_dir, reference_build, tmp_path,
                                                                           one_thread):
    """4 clips per model call give the rows of 1 clip per call, in the same order, within rounding (other batch shapes,
    other kernels); batches stay within blocks of 3, so a build killed half-way resumes to the uninterrupted result."""

    def config(output: Path, clips_per_batch: int) -> BuildConfig:
        return BuildConfig(corpus=str(corpus), output_dir=output, model=str(model_dir), block_size=3, thresholds=LENIENT,
                           clips_per_batch=clips_per_batch)

    batched = tmp_path / "batched"
    build(config(batched, 4), progress=False)
    for split in ("train", "rejected"):
        assert_same_tracks_within_rounding(read_split(batched, split), read_split(reference_build, split))
    assert (batched / "skips.jsonl").read_text() == (reference_build / "skips.jsonl").read_text()
    output = tmp_path / "resumed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    process = subprocess.Popen([sys.executable, "-m", "clearsep_data", *build_args(corpus, model_dir, output, "--clips-per-batch", "4")],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = output / ".clearsep-build"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(work.glob("block-*"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= len(list(work.glob("block-*"))) < 6, "the build should have been killed half-way"
    with pytest.raises(BuildError, match="clips_per_batch 4 then, 2 now"):
        build(config(output, 2), progress=False)
    build(config(output, 4), progress=False)
    for split in ("train", "rejected"):
        assert read_split(output, split) == read_split(batched, split)


def test_a_flac_stream_written_piece_by_piece_past_its_spool_gives_the_bytes_of_one_encoding(monkeypatch):
    """Beyond ``SPOOL_BYTES`` a long track's FLAC waits in a temporary file: the bytes are still those of one write."""
    import io

    import soundfile as sf

    from clearsep_data.audio import FlacStream

    monkeypatch.setattr(FlacStream, "SPOOL_BYTES", 4096)
    waveform = (0.3 * np.random.default_rng(0).standard_normal(RATE * 3)).astype(np.float32)
    stream = FlacStream(RATE)
    for start in range(0, len(waveform), RATE // 2):
        stream.write(waveform[start : start + RATE // 2])
    payload = stream.finish()
    whole = io.BytesIO()
    sf.write(whole, waveform, RATE, format="FLAC", subtype="PCM_16")
    assert len(payload) > 4096 and payload == whole.getvalue()


def test_a_long_clip_separated_window_by_window_equals_the_whole_clip(model_dir, monkeypatch):
    """A 9 s clip in 5 windows of one model chunk (streamed: tracks FLAC-encoded and scores summed window by window)
    gives the tracks and scores of the clip separated whole, within rounding; only the streamed one fixes glibc's
    mmap threshold."""
    heap_calls = []
    monkeypatch.setattr("clearsep_data.track_maker.map_large_blocks", lambda: heap_calls.append(1))
    model = ClearSepModel.from_pretrained(model_dir).eval()
    rng = np.random.default_rng(0)
    mixture = (rng.standard_normal(9 * RATE) * 0.1).astype(np.float32)
    clip = Clip(index=0, clip_id="abcdefghijk", start_seconds=0.0, end_seconds=9.0, labels=("/m/09x0r", "/m/05tny_", "/m/03kmc9"),
                audio="x.flac", where="segments.csv:4")
    prepared = Prepared(clip, ("/m/09x0r", "/m/05tny_", "/m/03kmc9"), mixture)
    whole = TrackMaker(demo_ontology(), model, "m@0", thresholds=LENIENT).make([prepared])[0]
    assert not heap_calls
    streamed_maker = TrackMaker(demo_ontology(), model, "m@0", thresholds=LENIENT, window_chunks=1)
    assert len(streamed_maker._windows(len(mixture))) == 5
    streamed = streamed_maker.make([prepared])[0]
    assert heap_calls and whole[2] is None and streamed[2] is None
    encoded = encode_audio(whole[0] + whole[1], RATE)
    assert all("bytes" in row["audio"] for row in streamed[0] + streamed[1])
    assert_same_tracks_within_rounding(streamed[0] + streamed[1], encoded)


def test_the_mmap_threshold_is_fixed_once_and_never_over_the_users_setting(monkeypatch):
    import platform

    from clearsep_data.heap import map_large_blocks

    map_large_blocks.cache_clear()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert map_large_blocks() is False
    map_large_blocks.cache_clear()
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert map_large_blocks() is (platform.libc_ver()[0] == "glibc")  # glibc's mallopt says 1 when it takes the value
    assert map_large_blocks.cache_info().hits == 0 and map_large_blocks() is map_large_blocks()


def is_running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_bad_inputs_become_skips_with_reasons_and_the_run_finishes(corpus, model_dir, tmp_path):
    broken = tmp_path / "broken"
    __import__("shutil").copytree(corpus, broken)
    segments = broken / "balanced_train_segments.csv"
    lines = segments.read_text().splitlines()
    ids = [line.split(",")[0] for line in lines[3:]]
    (broken / "audio" / f"{ids[0]}.flac").write_bytes(b"not audio at all" * 10)  # corrupt
    (broken / "audio" / f"{ids[1]}.flac").unlink()  # missing
    sf.write(broken / "audio" / f"{ids[2]}.flac", np.zeros(int(RATE * SECONDS), dtype=np.float32), RATE)  # silent
    sf.write(broken / "audio" / f"{ids[3]}.flac", np.full(RATE // 2, 0.1, dtype=np.float32), RATE)  # too short
    lines[4 + 3] = lines[4 + 3].rsplit(",", 1)[0] + ', "/m/not-a-class"'  # unknown label
    segments.write_text("\n".join(lines + ["garbage row without enough columns"]) + "\n")
    summary = build(BuildConfig(corpus=str(broken), output_dir=tmp_path / "out", model=str(model_dir), block_size=4,
                                thresholds=LENIENT), progress=False)
    skips = [json.loads(line) for line in (tmp_path / "out" / "skips.jsonl").read_text().splitlines()]
    reasons = {skip["clip_id"]: skip["reason"] for skip in skips}
    assert "cannot decode" in reasons[ids[0]]
    assert reasons[ids[1]].startswith(f"no audio file {ids[1]}.* or Y{ids[1]}.*")
    assert "silent" in reasons[ids[2]]
    assert "shorter than its segment" in reasons[ids[3]]
    assert "/m/not-a-class" in reasons[ids[4]]
    assert any(skip["where"].endswith(f"balanced_train_segments.csv:{len(lines) + 1}") for skip in skips)
    assert summary.clips == 17 and summary.skipped_clips == len(skips) == 6
    kept = {row["clip_id"] for split in ("train", "rejected") for row in read_split(tmp_path / "out", split)}
    assert kept.isdisjoint(reasons) and len(kept) == 16 - 5  # every other clip became tracks
