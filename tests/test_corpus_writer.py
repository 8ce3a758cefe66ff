"""The corpus-writing helpers shared by the demo corpus and benchmarks/realsound.py."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clearsep_data.corpus import open_corpus
from clearsep_data.corpus_writer import (
    BACKGROUND,
    SETTINGS,
    YTID_ALPHABET,
    YTID_LAST,
    prepare_folder,
    write_clip,
    write_csv,
    write_flac,
    write_json,
    write_segments,
    youtube_like_ids,
)
from clearsep_data.ontology import mid_slug


def test_write_segments_names_the_creator_and_is_read_back(tmp_path):
    rows = [("abcdefghijA", 30.0, 40.0, ("/m/09x0r",)), ("bcdefghijkE", 0.0, 10.0, ("/m/05tny_", "/m/09x0r"))]
    path = tmp_path / "balanced_train_segments.csv"
    write_segments(path, rows, creator="a test (version 7)")
    assert path.read_text(encoding="utf-8").splitlines() == [
        "# Segments csv created by a test (version 7)",
        "# num_ytids=2, num_segs=2, num_unique_labels=2, num_positive_labels=3",
        "# YTID, start_seconds, end_seconds, positive_labels",
        'abcdefghijA, 30.000, 40.000, "/m/09x0r"',
        'bcdefghijkE, 0.000, 10.000, "/m/05tny_,/m/09x0r"',
    ]


def test_write_clip_references_only_for_several_events_and_they_sum_exactly(tmp_path):
    rng = np.random.default_rng(0)
    tracks = rng.integers(-8000, 8000, (3, 1600)).astype(np.int16)
    assert write_clip(tmp_path, "oneeventAAA", tracks[:2], ["/m/09x0r", BACKGROUND], 16000) == []  # background is no event
    assert not (tmp_path / "references").exists()
    rows = write_clip(tmp_path, "threetrackE", tracks, ["/m/09x0r", "/m/05tny_", BACKGROUND], 16000)
    assert rows == [
        ("threetrackE", "/m/09x0r", f"references/threetrackE/{mid_slug('/m/09x0r')}.flac"),
        ("threetrackE", "/m/05tny_", f"references/threetrackE/{mid_slug('/m/05tny_')}.flac"),
        ("threetrackE", BACKGROUND, "references/threetrackE/background.flac"),
    ]
    mixture, rate = sf.read(tmp_path / "audio" / "threetrackE.flac", dtype="int16")
    references = [sf.read(tmp_path / path, dtype="int16")[0] for _, _, path in rows]
    assert rate == 16000 and np.array_equal(np.sum(references, axis=0), mixture)
    with pytest.raises(ValueError, match="3 tracks but 2 labels"):
        write_clip(tmp_path, "mismatchedA", tracks, ["/m/09x0r", "/m/05tny_"], 16000)
    with pytest.raises(TypeError, match="int16"):
        write_flac(tmp_path / "float.flac", tracks.astype(np.float32), 16000)


def test_youtube_like_ids_are_distinct_and_deterministic():
    ids = youtube_like_ids(np.random.default_rng(3), 500)
    assert ids == youtube_like_ids(np.random.default_rng(3), 500) and len(set(ids)) == 500
    assert all(len(i) == 11 and set(i) <= set(YTID_ALPHABET) and i[-1] in YTID_LAST for i in ids)


def test_prepare_folder_clears_only_known_outputs_and_protects_foreign_data(tmp_path):
    out = tmp_path / "corpus"
    prepare_folder(out, False, SETTINGS, ("audio", "extra.csv", SETTINGS))
    assert out.is_dir()
    write_csv(out / "extra.csv", ("a",), [(1,)])
    write_json(out / SETTINGS, {"generator": "test"})
    (out / "audio").mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_folder(out, False, SETTINGS, ("audio", "extra.csv", SETTINGS))
    prepare_folder(out, True, SETTINGS, ("audio", "extra.csv", SETTINGS))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "audio").mkdir()
    with pytest.raises(FileExistsError, match="has audio/ but no corpus.json: it does not look like a real-sound corpus"):
        prepare_folder(out, True, SETTINGS, ("audio", SETTINGS), kind="real-sound corpus")
    assert (out / "audio").is_dir()



def test_a_written_corpus_opens(tmp_path):
    """The helpers alone write a folder that open_corpus reads (with the shipped AudioSet label files)."""
    tracks = np.full((2, 16000), 3000, np.int16)
    write_clip(tmp_path, "abcdefghijA", tracks, ["/m/09x0r", "/m/05tny_"], 16000)
    write_segments(tmp_path / "balanced_train_segments.csv", [("abcdefghijA", 0.0, 1.0, ("/m/09x0r", "/m/05tny_"))], "a test")
    clip = next(iter(open_corpus(str(tmp_path))))
    assert clip.labels == ("/m/09x0r", "/m/05tny_")
