"""The mixing half of benchmarks/realsound.py on synthetic "recordings": offline, no apt, no packages.

What the real-sound benchmark promises and these tests hold it to: the corpus reads as a benchmark (the layout
`clearsep-data evaluate` expects), the references sum exactly to each clip, eval clips are mixed only from
recordings no training clip uses, no clip holds two classes related in the ontology, and a seed fixes every byte.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # last: engine.py etc. shadow nothing

import realsound  # noqa: E402  (a script folder, not a package)
from clearsep_data.corpus import Clip  # noqa: E402
from clearsep_data.demo_corpus import demo_ontology  # noqa: E402
from clearsep_data.benchmark_folder import Benchmark  # noqa: E402

SPEECH, BARK, DOG, SIREN, BELL = "/m/09x0r", "/m/05tny_", "/m/0bt9lr", "/m/03kmc9", "/m/0395lw"
RATE = realsound.SAMPLING_RATE
CLIPS, EVAL_CLIPS, SEED = 12, 5, 3


def tone(frequency: float, seconds: float) -> np.ndarray:
    """A synthetic recording: a decaying sine whose frequency identifies it in any track it lands in."""
    time = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * frequency * time) * np.exp(-time / seconds)).astype(np.float32)


def recordings(split: str, frequencies: range) -> list[realsound.Recording]:
    """Three recordings per class (Dog is Bark's parent: the two must never share a clip)."""
    mids = [SPEECH, BARK, DOG, SIREN, BELL]
    frequency = iter(frequencies)
    return [
        realsound.Recording(f"{split}-{index}-{take}", mid, tone(next(frequency), 0.3 + 0.4 * take))
        for index, mid in enumerate(mids)
        for take in range(3)
    ]


TRAIN = recordings("train", range(300, 1800, 100))
HELD_OUT = recordings("eval", range(4000, 5500, 100))


@pytest.fixture(scope="module")
def ontology_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ontology") / "ontology.json"
    path.write_text(json.dumps(demo_ontology().to_entries()), encoding="utf-8")
    return path


def write(out: Path, ontology_file: Path) -> dict:
    return realsound.write_corpus(
        out, TRAIN, HELD_OUT, ontology_file, clips=CLIPS, eval_clips=EVAL_CLIPS, single_event_fraction=0.25, seed=SEED
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ontology_file) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("realsound") / "corpus"
    return out, write(out, ontology_file)


def dominant_frequency(path: Path) -> float:
    samples, rate = sf.read(path, dtype="float64")
    return float(np.argmax(np.abs(np.fft.rfft(samples))) * rate / len(samples))


def test_layout_reads_as_a_benchmark(corpus):
    out, summary = corpus
    benchmark = Benchmark.open(out, "eval")
    clips = list(benchmark.corpus)
    assert len(clips) == EVAL_CLIPS and all(isinstance(clip, Clip) for clip in clips)  # no Skip rows
    assert {clip.clip_id for clip in clips} <= set(benchmark.references)
    assert benchmark.corpus.vocabulary == [SPEECH, DOG, BARK, SIREN, BELL]  # the classes used, in ontology order
    assert summary["single_event_clips"] == 3 and summary["multi_event_clips"] == CLIPS - 3
    with open(out / realsound.RECORDINGS, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(TRAIN) + len(HELD_OUT)
    assert {row["split"] for row in rows if row["recording_id"].startswith("eval")} == {"eval"}
    assert json.loads((out / "corpus.json").read_text())["generator"] == "benchmarks/realsound.py"


def test_references_sum_to_each_clip_and_eval_uses_only_held_out_recordings(corpus):
    out, _ = corpus
    references = Benchmark.open(out, "eval").references
    eval_ids = {clip.clip_id for clip in Benchmark.open(out, "eval").corpus}
    assert len(references) == CLIPS - 3 + EVAL_CLIPS  # every multi-event clip, single-event clips have none
    for ytid, tracks in references.items():
        mixture, _ = sf.read(out / "audio" / f"{ytid}.flac", dtype="int16")
        stems = [sf.read(reference.path, dtype="int16")[0].astype(np.int32) for reference in tracks]
        assert np.array_equal(np.sum(stems, axis=0), mixture)
        held_out = [dominant_frequency(reference.path) > 3000 for reference in tracks]
        assert all(held_out) if ytid in eval_ids else not any(held_out)


def test_no_clip_holds_classes_related_in_the_ontology(corpus):
    out, _ = corpus
    for split in ("train", "eval"):
        for clip in Benchmark.open(out, split).corpus:
            assert not {BARK, DOG} <= set(clip.labels)
            assert len(clip.labels) == len(set(clip.labels))


def test_same_seed_same_bytes(corpus, tmp_path, ontology_file):
    out, _ = corpus
    again = tmp_path / "again"
    write(again, ontology_file)

    def digests(root: Path) -> dict[str, str]:
        files = sorted(path for path in root.rglob("*") if path.is_file())
        return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in files}

    assert digests(out) == digests(again)


def test_split_holds_out_whole_packages_else_recordings():
    waveform = tone(440.0, 0.5)
    several = [realsound.Recording(f"a{i}", SPEECH, waveform, package="big" if i < 9 else "small") for i in range(12)]
    single = [realsound.Recording(f"b{i}", SIREN, waveform, package="only") for i in range(5)]
    split, held_out = realsound.split_recordings(several + single, np.random.default_rng(0))
    assert held_out[SPEECH] == ("package", ["small"])
    assert [split[f"a{i}"] for i in range(12)] == ["train"] * 9 + ["eval"] * 3
    level, count = held_out[SIREN][0], sum(split[f"b{i}"] == "eval" for i in range(5))
    assert level == "recording" and 1 <= count <= 5 - realsound.MIN_TRAIN_RECORDINGS


def test_valid_clips_mix_only_held_out_recordings_and_leave_the_other_splits_unchanged(corpus, tmp_path, ontology_file):
    out, _ = corpus
    with_valid = tmp_path / "valid"
    realsound.write_corpus(with_valid, TRAIN, HELD_OUT, ontology_file, clips=CLIPS, eval_clips=EVAL_CLIPS,
                           valid_clips=4, single_event_fraction=0.25, seed=SEED)
    for name in ("balanced_train_segments.csv", "eval_segments.csv"):
        assert (with_valid / name).read_bytes() == (out / name).read_bytes()
    valid = Benchmark.open(with_valid, "valid")
    clips = list(valid.corpus)
    assert len(clips) == 4 and not {clip.clip_id for clip in clips} & {clip.clip_id for clip in Benchmark.open(out, "eval").corpus}
    for clip in clips:
        assert all(dominant_frequency(reference.path) > 3000 for reference in valid.references[clip.clip_id])
