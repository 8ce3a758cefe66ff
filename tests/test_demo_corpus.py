"""The synthetic demo corpus: layout, formats, determinism, references and the character of its classes."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from clearsep_data import synth
from clearsep_data.cli import app
from clearsep_data.demo_corpus import (
    DEMO_CLASSES,
    GENERATOR_VERSION,
    SINGLE_EVENT_FRACTION,
    YTID_ALPHABET,
    DemoCorpusSummary,
    generate_demo_corpus,
)
from clearsep_data.ontology import Ontology, mid_slug

CLIPS, EVAL_CLIPS, SECONDS, RATE, SEED = 30, 8, 2.0, 16000, 7
TOP_LEVEL = {"/m/0dgw9r", "/m/0jbk", "/t/dd00041", "/m/059j3w", "/m/04rlf"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, DemoCorpusSummary]:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    summary = generate_demo_corpus(out, clips=CLIPS, eval_clips=EVAL_CLIPS, seed=SEED, seconds=SECONDS)
    return out, summary


def read_segments(path: Path) -> tuple[list[str], list[tuple[str, str, str, list[str]]]]:
    """Comment lines and rows (ytid, start, end, labels) of an AudioSet segments CSV, read with ``csv``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.startswith("#")]
    rows = [(ytid, start, end, labels.split(",")) for ytid, start, end, labels in csv.reader(lines[3:], skipinitialspace=True)]
    return comments, rows


def file_hashes(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(root.rglob("*")) if path.is_file()}


def manifest_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "references" / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_same_arguments_write_identical_bytes_and_another_seed_differs(corpus, tmp_path):
    out, _ = corpus
    again = generate_demo_corpus(tmp_path / "again", clips=CLIPS, eval_clips=EVAL_CLIPS, seed=SEED, seconds=SECONDS)
    first, second = file_hashes(out), file_hashes(again.out_dir)
    assert len(first) > 2 * (CLIPS + EVAL_CLIPS)
    assert first == second

    other = generate_demo_corpus(tmp_path / "other", clips=CLIPS, eval_clips=EVAL_CLIPS, seed=SEED + 1, seconds=SECONDS)
    other_hashes = file_hashes(other.out_dir)
    audio = {name: digest for name, digest in first.items() if name.startswith("audio/")}
    assert not set(audio.values()) & set(other_hashes.values())
    assert first["ontology.json"] == other_hashes["ontology.json"]  # the class set does not depend on the seed


def test_layout_and_file_formats(corpus):
    out, summary = corpus
    for name in ("ontology.json", "class_labels_indices.csv", "balanced_train_segments.csv", "eval_segments.csv", "corpus.json"):
        assert (out / name).is_file(), name

    settings = json.loads((out / "corpus.json").read_text())
    assert (settings["seed"], settings["clips"], settings["eval_clips"]) == (SEED, CLIPS, EVAL_CLIPS)
    assert (settings["sampling_rate"], settings["seconds"], settings["version"]) == (RATE, SECONDS, GENERATOR_VERSION)
    assert settings["single_event_fraction"] == SINGLE_EVENT_FRACTION

    with open(out / "class_labels_indices.csv", newline="", encoding="utf-8") as handle:
        classes = list(csv.DictReader(handle))
    assert list(classes[0]) == ["index", "mid", "display_name"]
    assert [int(row["index"]) for row in classes] == list(range(len(classes)))
    assert [row["mid"] for row in classes[:9]] == [demo.mid for demo in DEMO_CLASSES]
    assert {row["display_name"] for row in classes} >= {"Chirp, tweet", "Dog", "Music", "Clock", "Bird"}
    assert '"Chirp, tweet"' in (out / "class_labels_indices.csv").read_text()

    ontology = Ontology.from_json(out / "ontology.json")
    assert ontology.ancestors("/m/05tny_") == {"/m/0bt9lr", "/m/068hy", "/m/0jbk"}
    assert ontology.ancestors("/m/07qjznl") == {"/m/01x3z", "/t/dd00077", "/t/dd00041"}
    assert ontology.ancestors("/m/05r5c") == {"/m/05148p4", "/m/04szw", "/m/04rlf"}
    assert {mid for mid in ontology.nodes if not ontology.parents(mid)} == TOP_LEVEL
    for demo in DEMO_CLASSES:
        assert ontology.name(demo.mid) == demo.name
        assert ontology.ancestors(demo.mid) == set(demo.ancestors)
    assert {row["mid"] for row in classes} <= set(ontology.nodes)

    for name, count in (("balanced_train_segments.csv", CLIPS), ("eval_segments.csv", EVAL_CLIPS)):
        comments, rows = read_segments(out / name)
        assert len(comments) == 3 and comments[2] == "# YTID, start_seconds, end_seconds, positive_labels"
        assert len(rows) == count
        for ytid, start, end, labels in rows:
            assert len(ytid) == 11 and set(ytid) <= set(YTID_ALPHABET)
            assert start.endswith(".000") and float(start) % 10 == 0
            assert float(end) - float(start) == pytest.approx(SECONDS)
            assert labels and set(labels) <= set(ontology.nodes)
            audio, rate = sf.read(out / "audio" / f"{ytid}.flac", dtype="int16")
            assert rate == RATE and audio.shape == (int(SECONDS * RATE),)
            assert sf.info(out / "audio" / f"{ytid}.flac").subtype == "PCM_16"
            assert np.abs(audio).max() > 1000  # audible, and peak normalised below full scale
    train_ids = [row[0] for row in read_segments(out / "balanced_train_segments.csv")[1]]
    eval_ids = [row[0] for row in read_segments(out / "eval_segments.csv")[1]]
    assert len(set(train_ids)) == CLIPS and len(set(eval_ids)) == EVAL_CLIPS
    assert not set(train_ids) & set(eval_ids)
    assert len(list((out / "audio").iterdir())) == CLIPS + EVAL_CLIPS
    assert summary.train_clips == CLIPS and summary.eval_clips == EVAL_CLIPS


def test_single_and_multi_event_split_and_exclusive_labels(corpus):
    out, summary = corpus
    ontology = Ontology.from_json(out / "ontology.json")
    references: dict[str, list[str]] = {}
    for row in manifest_rows(out):
        references.setdefault(row["ytid"], []).append(row["label"])

    _, train = read_segments(out / "balanced_train_segments.csv")
    single = [ytid for ytid, _, _, labels in train if len(ontology.select_queries(labels).queries) == 1]
    assert len(single) == summary.single_event_clips == round(SINGLE_EVENT_FRACTION * CLIPS)
    assert summary.multi_event_clips == CLIPS - len(single)
    assert not set(single) & set(references)  # single-event clips have no references

    _, held_out = read_segments(out / "eval_segments.csv")
    parents_listed = 0
    for ytid, _, _, labels in [row for row in train if row[0] not in single] + held_out:
        events = [label for label in references[ytid] if label != "background"]
        queries = ontology.select_queries(labels).queries
        assert len(events) in (2, 3) and len(set(events)) == len(events)
        assert sorted(queries) == sorted(events)
        parents_listed += len(labels) > len(queries)
    assert parents_listed > 0  # some label lists name a parent (Dog with Bark, ...), as AudioSet does
    with_background = sum("background" in labels for labels in references.values())
    assert 0 < with_background <= summary.clips_with_background  # single-event clips may have one too


def test_references_sum_to_the_mixture(corpus):
    out, _ = corpus
    rows = manifest_rows(out)
    assert rows
    by_clip: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_clip.setdefault(row["ytid"], []).append(row)
        slug = "background" if row["label"] == "background" else mid_slug(row["label"])
        assert row["path"] == f"references/{row['ytid']}/{slug}.flac"
    assert any(row["label"] == "background" for row in rows)
    for ytid, clip_rows in by_clip.items():
        mixture, _ = sf.read(out / "audio" / f"{ytid}.flac")
        tracks = np.stack([sf.read(out / row["path"])[0] for row in clip_rows])
        assert all(np.abs(track).max() > 0 for track in tracks)
        error = mixture - tracks.sum(axis=0)
        snr = 10 * np.log10(np.sum(mixture**2) / max(np.sum(error**2), 1e-20))
        assert snr > 40, (ytid, snr)


def test_clips_decode_with_the_shared_audio_reader(corpus):
    from clearsep_data.audio import load_audio

    out, _ = corpus
    ytid = read_segments(out / "eval_segments.csv")[1][0][0]
    decoded = load_audio(out / "audio" / f"{ytid}.flac", RATE)
    written, _ = sf.read(out / "audio" / f"{ytid}.flac", dtype="float32")
    np.testing.assert_allclose(decoded, written, atol=1e-6)


def spectral_profile(signal: np.ndarray, rate: int) -> np.ndarray:
    """Share of energy in 16 log-spaced bands (log), and how much the frame energy fluctuates."""
    frames = signal[: len(signal) // 512 * 512].reshape(-1, 512)
    power = np.abs(np.fft.rfft(frames * np.hanning(512), axis=1)) ** 2
    frequencies = np.fft.rfftfreq(512, 1 / rate)
    edges = np.geomspace(60, 0.45 * rate, 17)
    bands = np.stack([power[:, (frequencies >= lo) & (frequencies < hi)].sum(1) for lo, hi in zip(edges, edges[1:])], 1)
    profile = np.log10(bands.sum(0) / bands.sum() + 1e-9)
    return np.append(profile, np.std(np.diff(np.log10(power.sum(1) + 1e-12))))


def spectral_centroid(signal: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(signal)) ** 2
    return float((power * np.fft.rfftfreq(len(signal), 1 / rate)).sum() / power.sum())


def test_classes_differ_in_character_and_events_vary():
    features, centroids, labels = [], {}, []
    for index, demo in enumerate(DEMO_CLASSES):
        sounds = [demo.synthesize(np.random.default_rng([index, take]), 2 * RATE, RATE) for take in range(6)]
        assert all(sound.shape == (2 * RATE,) and np.isfinite(sound).all() for sound in sounds)
        assert abs(np.corrcoef(sounds[0], sounds[1])[0, 1]) < 0.5  # no two events are the same waveform
        centroids[demo.name] = np.mean([spectral_centroid(sound, RATE) for sound in sounds])
        features += [spectral_profile(sound, RATE) for sound in sounds]
        labels += [index] * len(sounds)
    ordered = sorted(centroids.values())
    assert all(high / low > 1.1 for low, high in zip(ordered, ordered[1:])), centroids

    # Leave-one-out nearest class mean on coarse spectral/temporal features tells the classes apart.
    features, labels = np.array(features), np.array(labels)
    correct = 0
    for held in range(len(features)):
        keep = np.arange(len(features)) != held
        means = np.stack([features[keep & (labels == c)].mean(0) for c in range(len(DEMO_CLASSES))])
        correct += int(np.argmin(((means - features[held]) ** 2).sum(1)) == labels[held])
    assert correct / len(features) >= 0.85


@pytest.mark.parametrize("rate", [8000, 16000])
def test_sources_are_band_limited(rate):
    for index, make in enumerate([demo.synthesize for demo in DEMO_CLASSES] + [synth.room_tone]):
        sound = make(np.random.default_rng(index), rate, rate)
        power = np.abs(np.fft.rfft(sound)) ** 2
        above = power[np.fft.rfftfreq(len(sound), 1 / rate) > synth.BAND_LIMIT * rate].sum() / power.sum()
        assert above < 0.01, (make.__name__, rate, above)


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "corpus"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_demo_corpus(out, clips=2, eval_clips=1, seconds=1.0)
    summary = generate_demo_corpus(out, clips=2, eval_clips=1, seconds=1.0, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"  # only the corpus's own files are replaced
    first = {path.name for path in (out / "audio").iterdir()}
    generate_demo_corpus(out, clips=3, eval_clips=1, seconds=1.0, seed=5, overwrite=True)
    assert not first & {path.name for path in (out / "audio").iterdir()}  # the old clips are gone
    assert summary.train_clips == 2

    foreign = tmp_path / "foreign"
    (foreign / "audio").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="does not look like a demo corpus"):
        generate_demo_corpus(foreign, clips=2, overwrite=True)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(clips=0), "clips must be at least 1"),
        (dict(clips=2, eval_clips=-1), "eval_clips"),
        (dict(clips=2, sampling_rate=4000), "sampling_rate"),
        (dict(clips=2, seconds=0.5), "seconds"),
        (dict(clips=2, single_event_fraction=1.5), "single_event_fraction"),
    ],
)
def test_invalid_settings_are_named(tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        generate_demo_corpus(tmp_path / "corpus", **settings)


def test_command_line(tmp_path):
    runner = CliRunner()
    out = tmp_path / "corpus"
    result = runner.invoke(app, ["demo-corpus", str(out), "--clips", "10", "--eval-clips", "2", "--seconds", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "Clips per class" in result.output and "4 single-event" in result.output
    assert len(list((out / "audio").iterdir())) == 12

    again = runner.invoke(app, ["demo-corpus", str(out), "--clips", "10"])
    assert again.exit_code == 1 and "not empty" in again.output
    replaced = runner.invoke(app, ["demo-corpus", str(out), "--clips", "3", "--eval-clips", "0", "--seconds", "1", "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert len(list((out / "audio").iterdir())) == 3

    scarce = runner.invoke(app, ["demo-corpus", str(tmp_path / "scarce"), "--clips", "10", "--eval-clips", "0", "--seconds", "1",
                                 "--single-event-fraction", "0.1"])
    assert scarce.exit_code == 0, scarce.output
    assert "1 single-event, 9 multi-event" in scarce.output
    assert json.loads((tmp_path / "scarce" / "corpus.json").read_text())["single_event_clips"] == 1
