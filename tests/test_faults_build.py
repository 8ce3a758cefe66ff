"""Fault injection on the build folder: user files, locks, stale temporaries, changed inputs, empty results.

Each test failed on the engine before the build folder owned its files (``clearsep_data.build_folder``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from clearsep_data import ClearSepConfig, ClearSepModel
from clearsep_data import build_folder
from clearsep_data.build_folder import BuildError, BuildFolder
from clearsep_data.demo_corpus import generate_demo_corpus, label_vocabulary
from clearsep_data.engine import BuildConfig, build, reason_category
from clearsep_data.filtering import Thresholds
from clearsep_data.tracks import load_tracks

RATE = 8000
LENIENT = Thresholds(min_re_sdr=-100, min_re_sisdr=-100, min_energy_ratio=-60, min_consistency_sisdr=-100, max_leakage_db=100)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    mids, names = zip(*label_vocabulary())
    config = ClearSepConfig(label_mids=list(mids), id2label=dict(enumerate(names)), sampling_rate=RATE, n_fft=256,
                            hop_length=64, channels=[8, 16], encoder_blocks=1, query_dim=16, segment_seconds=1.0)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model")
    ClearSepModel(config).save_pretrained(path)
    return path


def make_corpus(root: Path, seed: int = 5, clips: int = 8) -> Path:
    generate_demo_corpus(root, clips=clips, eval_clips=1, seed=seed, sampling_rate=RATE, seconds=1.0)
    return root


@pytest.fixture
def corpus(tmp_path) -> Path:
    return make_corpus(tmp_path / "corpus")


def config_for(corpus: Path, output: Path, model: Path | None = None, **overrides) -> BuildConfig:
    return BuildConfig(corpus=str(corpus), output_dir=output, model=None if model is None else str(model), block_size=2,
                       thresholds=LENIENT, **overrides)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    return subprocess.run([sys.executable, "-m", "clearsep_data", *args], env=env, capture_output=True, text=True, timeout=300)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def interrupt_after_blocks(config: BuildConfig, blocks: int, monkeypatch) -> None:
    """Run ``build`` until ``blocks`` blocks are committed, then stop it as a kill would."""
    original = BuildFolder.commit_block
    committed = []

    def commit_then_stop(self, *args, **kwargs):
        path = original(self, *args, **kwargs)
        committed.append(path)
        if len(committed) == blocks:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(BuildFolder, "commit_block", commit_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(config, progress=False)
    monkeypatch.setattr(BuildFolder, "commit_block", original)


def test_overwrite_never_deletes_a_folder_that_holds_no_build(corpus, tmp_path):
    output = tmp_path / "mine"
    (output / "data").mkdir(parents=True)
    (output / "data" / "precious.parquet").write_bytes(b"user data")
    (output / "README.md").write_text("my notes")
    result = run_cli("build", str(corpus), str(output), "--overwrite", "--no-progress")
    assert result.returncode == 1
    assert len(error_lines(result)) == 1 and "holds no ClearSep build" in result.stderr
    assert (output / "data" / "precious.parquet").read_bytes() == b"user data"
    assert (output / "README.md").read_text() == "my notes"
    refused = run_cli("build", str(corpus), str(output), "--no-progress")  # without --overwrite, it is not recommended
    assert refused.returncode == 1 and "--overwrite" not in refused.stderr


def test_overwrite_replaces_only_what_a_build_wrote(corpus, tmp_path):
    output = tmp_path / "tracks"
    build(config_for(corpus, output), progress=False)
    (output / "notes.txt").write_text("kept")
    build(config_for(corpus, output, iteration=3), overwrite=True, progress=False)
    assert (output / "notes.txt").read_text() == "kept"
    assert json.loads((output / "build.json").read_text())["fingerprint"]["iteration"] == 3
    assert not (output / BuildFolder.LOCK).exists()


def test_a_second_build_on_the_same_folder_is_refused_naming_the_holder(corpus, tmp_path):
    output = tmp_path / "busy"
    holder = BuildFolder(output)
    holder.lock()
    try:
        result = run_cli("build", str(corpus), str(output), "--no-progress")
        assert result.returncode == 1
        assert error_lines(result) == [f"error: {output} is being written by another build (PID {os.getpid()}); wait for it or stop it"]
        with pytest.raises(BuildError, match=f"PID {os.getpid()}"):
            BuildFolder(output).lock()
    finally:
        holder.unlock()
    build(config_for(corpus, output), progress=False)  # the lock is free again


def test_resume_removes_stale_temporaries(corpus, tmp_path, monkeypatch):
    output = tmp_path / "stale"
    config = config_for(corpus, output)
    interrupt_after_blocks(config, 1, monkeypatch)
    (output / ".README.md.99999.tmp").write_text("half a card")
    (output / ".clearsep-build" / ".tmp-block-00000003-99999").mkdir()
    (output / ".data.tmp").mkdir()
    build(config, progress=False)
    leftovers = [path.name for path in output.iterdir() if path.name.startswith(".")]
    assert leftovers == [], leftovers


def test_resume_refuses_a_corpus_regenerated_in_place(tmp_path, monkeypatch):
    corpus = make_corpus(tmp_path / "corpus", seed=5)
    output = tmp_path / "tracks"
    config = config_for(corpus, output)
    interrupt_after_blocks(config, 2, monkeypatch)
    shutil.rmtree(corpus)
    make_corpus(corpus, seed=6)
    with pytest.raises(BuildError, match="other settings.*corpus_digest"):
        build(config, progress=False)


def test_resume_refuses_audio_changed_under_a_committed_block(corpus, tmp_path, monkeypatch):
    output = tmp_path / "tracks"
    config = config_for(corpus, output)
    interrupt_after_blocks(config, 2, monkeypatch)
    segments = (corpus / "balanced_train_segments.csv").read_text().splitlines()
    ytid = next(line for line in segments if not line.startswith("#")).split(",")[0]
    audio, rate = sf.read(corpus / "audio" / f"{ytid}.flac")
    sf.write(corpus / "audio" / f"{ytid}.flac", np.roll(audio, 100), rate)
    with pytest.raises(BuildError, match=r"balanced_train_segments.csv:\d+: the corpus changed since block 0"):
        build(config, progress=False)


def test_finished_build_rerun_with_bf16_or_another_block_size_is_refused(corpus, model_dir, tmp_path):
    output = tmp_path / "tracks"
    build(config_for(corpus, output, model_dir), progress=False)
    with pytest.raises(BuildError, match="bf16: false -> true"):
        build(config_for(corpus, output, model_dir, use_bf16=True), progress=False)
    with pytest.raises(BuildError, match="block_size"):
        build(dataclasses.replace(config_for(corpus, output, model_dir), block_size=3), progress=False)
    assert build(config_for(corpus, output, model_dir), progress=False) is not None  # the same settings: finished


def test_finishing_links_the_blocks_as_shards_and_a_build_killed_meanwhile_resumes(corpus, model_dir, tmp_path, monkeypatch):
    """Finishing writes no track byte: each shard under data/ is a block's own file (the same inode), in corpus order;
    the blocks stay whole until build.json is written, so a build killed while publishing finishes on a rerun."""
    output = tmp_path / "tracks"
    config = config_for(corpus, output, model_dir)
    publish, inodes = build_folder.publish_blocks, {}

    def publish_then_stop(blocks, data_dir, splits, features):
        for split in splits:
            inodes[split] = [os.stat(path).st_ino for block in blocks if (path := block.split_file(split))]
        publish(blocks, data_dir, splits, features)
        raise KeyboardInterrupt  # killed after data/ is in place, before build.json

    monkeypatch.setattr(build_folder, "publish_blocks", publish_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(config, progress=False)
    for split in ("train", "rejected"):
        shards = sorted((output / "data").glob(f"{split}-*.parquet"))
        assert [os.stat(shard).st_ino for shard in shards] == inodes[split]
    assert len(inodes["train"]) == 4  # 8 clips in blocks of 2: one shard per block
    monkeypatch.setattr(build_folder, "publish_blocks", publish)
    summary = build(config, progress=False)
    assert len(load_tracks(output)) == summary.accepted_tracks == sum(counts["num_examples"] for counts in summary.splits.values())
    assert not (output / BuildFolder.WORK_DIR).exists() and summary.clips == 8
    # push stages the block shards as the Hub's layout: re-sharded, every row kept, in order.
    from clearsep_data.hub.dataset import stage_dataset

    staged = stage_dataset(output, tmp_path / "stage", repo_id="me/tracks")
    assert [path.name for path in sorted((staged.path / "data").iterdir())] == ["train-00000-of-00001.parquet"]
    assert load_tracks(staged.path)["track_id"] == load_tracks(output)["track_id"]


def test_resume_under_another_thread_count_is_refused_naming_both(corpus, model_dir, tmp_path, monkeypatch):
    output = tmp_path / "tracks"
    config = config_for(corpus, output, model_dir)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        interrupt_after_blocks(config, 1, monkeypatch)
        torch.set_num_threads(2)
        with pytest.raises(BuildError, match="threads_per_process 1 then, 2 now"):
            build(config, progress=False)
        torch.set_num_threads(1)
        assert build(config, progress=False).clips == 8
    finally:
        torch.set_num_threads(threads)


def test_a_build_where_every_clip_is_skipped_loads_empty_and_says_why(corpus, tmp_path):
    for audio in (corpus / "audio").glob("*.flac"):
        audio.write_bytes(b"broken")
    output = tmp_path / "empty"
    result = run_cli("build", str(corpus), str(output), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "warning: no track was produced: 8 of 8 clips were skipped" in result.stderr
    assert "cannot decode" in result.stderr
    shards = sorted((output / "data").iterdir())
    assert [shard.name for shard in shards] == ["train-00000-of-00001.parquet"]
    tracks = load_tracks(output)
    assert len(tracks) == 0 and "audio" in tracks.features and "re_sdr" in tracks.features


def test_skip_reason_summaries_keep_mids_intact():
    assert reason_category("labels not in the ontology: /m/09x0r, /m/0bt9lr") == "labels not in the ontology: /m/09x0r, /m/0bt9lr"
    assert reason_category("audio is shorter than its segment (0.50 s < 1.00 s)") == "audio is shorter than its segment (# s < # s)"
    assert reason_category("/data/x/a1.flac: cannot decode") == "cannot decode"


def test_progress_counts_every_clip_once_with_skips(corpus, tmp_path, monkeypatch):
    from rich.console import Console

    import clearsep_data.engine as engine

    config = config_for(corpus, tmp_path / "tracks")  # no model: the multi-event clips are skipped
    interrupt_after_blocks(config, 2, monkeypatch)
    bars = []

    def recording_bar():
        bar = original_bar()
        bar.live.console = Console(file=open(os.devnull, "w"))
        bars.append(bar)
        return bar

    original_bar = engine.progress_bar
    monkeypatch.setattr(engine, "progress_bar", recording_bar)
    summary = build(config, progress=True)
    task = bars[0].tasks[0]
    assert task.total == task.completed == summary.clips == 8  # resumed blocks counted once, not beyond the total
    assert task.fields["skipped"] == summary.skipped_clips > 0
    assert task.fields["accepted"] == summary.accepted_tracks
