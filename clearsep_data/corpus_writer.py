"""Writing AudioSet-style corpora: the files and helpers shared by the corpus generators.

The demo corpus (:mod:`clearsep_data.demo_corpus`) and the real-sound benchmark corpus
(``benchmarks/realsound.py``) write the same layout, described in the README ("Demo corpus layout"):
the AudioSet segments CSVs, ``class_labels_indices.csv``, ``ontology.json``, ``corpus.json``, one
16-bit FLAC per clip in ``audio/``, and for every multi-event clip the track of each event under
``references/{YTID}/`` (listed in ``references/manifest.csv``), which sum exactly to the clip.

Everything here is deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from clearsep_data.ontology import mid_slug

TRAIN_SEGMENTS = "balanced_train_segments.csv"
EVAL_SEGMENTS = "eval_segments.csv"
CLASS_LABELS = "class_labels_indices.csv"
ONTOLOGY = "ontology.json"
SETTINGS = "corpus.json"
"""The generator's settings and summary; its presence marks a folder as a generated corpus."""
MANIFEST = "references/manifest.csv"
OUTPUTS = ("audio", "references", TRAIN_SEGMENTS, EVAL_SEGMENTS, CLASS_LABELS, ONTOLOGY, SETTINGS)
"""What every generator writes at the top of its folder (and so clears before writing again)."""
BACKGROUND = "background"
"""Manifest label of a clip's unlabelled background track (not an event, so no reference of its own is needed)."""

YTID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
YTID_LAST = "AEIMQUYcgkosw048"
"""An 11-character YouTube id encodes 64 bits, so its last character carries only 4: one of these 16."""


def prepare_folder(out: Path, overwrite: bool, marker_file: str, known_outputs: Iterable[str], kind: str = "generated corpus") -> None:
    """Make ``out`` ready to be written: create it, or when it is not empty, clear only ``known_outputs`` in it.

    A non-empty folder is refused (``FileExistsError``) unless ``overwrite``, and even then when it lacks
    ``marker_file`` but has one of the folders among ``known_outputs`` (``audio/``, ``references/``): that is
    someone else's data, not a ``kind`` written earlier, and it is not deleted.
    """
    known_outputs = tuple(known_outputs)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise FileExistsError(f"{out} is not empty; choose another folder, or overwrite it (--overwrite)")
    folders = [name for name in known_outputs if (out / name).is_dir()]
    if not (out / marker_file).exists() and folders:
        raise FileExistsError(
            f"{out} has {' or '.join(name + '/' for name in folders)} but no {marker_file}: "
            f"it does not look like a {kind}, refusing to delete it"
        )
    for name in known_outputs:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def youtube_like_ids(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` distinct 11-character ids drawn from ``rng``, valid as YouTube ids (:data:`YTID_LAST`)."""
    ids: dict[str, None] = {}
    while len(ids) < count:
        body = rng.integers(0, len(YTID_ALPHABET), (count, 10))
        last = rng.integers(0, len(YTID_LAST), count)
        for row, end in zip(body, last):
            ids.setdefault("".join(YTID_ALPHABET[i] for i in row) + YTID_LAST[end], None)
    return list(ids)[:count]


def active_rms(signal: np.ndarray, sampling_rate: int) -> float:
    """RMS over the louder half of 20 ms frames: the level of a sound while it sounds, pauses excluded."""
    hop = max(int(0.02 * sampling_rate), 1)
    frames = signal[: len(signal) // hop * hop].reshape(-1, hop) if len(signal) >= hop else signal[None, :]
    energy = np.sort((frames**2).mean(axis=1))
    return float(np.sqrt(energy[len(energy) // 2 :].mean()) + 1e-12)


def write_clip(
    out: Path, ytid: str, tracks: np.ndarray, labels: Sequence[str], sampling_rate: int
) -> list[tuple[str, str, str]]:
    """Write ``audio/{ytid}.flac``, the sum of ``tracks`` (int16 rows, one per entry of ``labels``), and when
    the clip holds several events, each track as ``references/{ytid}/{slug}.flac``; returns the clip's
    ``references/manifest.csv`` rows ``(ytid, label, path)`` (none for a single-event clip).

    A track labelled :data:`BACKGROUND` is part of the clip, not an event. The sum is taken in int32 and the
    tracks written unchanged, so the references sum exactly to the clip (scale the tracks so it cannot clip).
    """
    if len(tracks) != len(labels):
        raise ValueError(f"{len(tracks)} tracks but {len(labels)} labels")
    write_flac(out / "audio" / f"{ytid}.flac", tracks.sum(axis=0, dtype=np.int32).astype(np.int16), sampling_rate)
    if sum(label != BACKGROUND for label in labels) < 2:
        return []
    rows = []
    for label, track in zip(labels, tracks):
        path = f"references/{ytid}/{BACKGROUND if label == BACKGROUND else mid_slug(label)}.flac"
        write_flac(out / path, track, sampling_rate)
        rows.append((ytid, label, path))
    return rows


def write_segments(path: Path, rows: Sequence[tuple[str, float, float, Sequence[str]]], creator: str) -> None:
    """An AudioSet segments CSV of ``rows`` ``(ytid, start_seconds, end_seconds, labels)``: three comment lines
    (the first saying it was created by ``creator``), then ``YTID, start, end, "mid,mid"`` lines."""
    labels = [label for row in rows for label in row[3]]
    write_lines(path, [
        f"# Segments csv created by {creator}",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}, num_unique_labels={len(set(labels))}, num_positive_labels={len(labels)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
        *(f'{ytid}, {start:.3f}, {end:.3f}, "{",".join(clip_labels)}"' for ytid, start, end, clip_labels in rows),
    ])


def write_flac(path: Path, samples: np.ndarray, sampling_rate: int) -> None:
    """Write int16 samples as 16-bit FLAC unchanged (no float round trip, so references sum exactly)."""
    if samples.dtype != np.int16:
        raise TypeError(f"write_flac takes int16 samples, not {samples.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, sampling_rate, format="FLAC", subtype="PCM_16")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A plain UTF-8 CSV with ``\\n`` line ends, fields quoted only where needed (like ``"Chirp, tweet"``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    """``lines`` as UTF-8 text, each ended by ``\\n``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_json(path: Path, value: object) -> None:
    """``value`` as UTF-8 JSON, indented by 2, non-ASCII characters kept, ending in a newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = [
    "BACKGROUND",
    "CLASS_LABELS",
    "EVAL_SEGMENTS",
    "MANIFEST",
    "ONTOLOGY",
    "OUTPUTS",
    "SETTINGS",
    "TRAIN_SEGMENTS",
    "YTID_ALPHABET",
    "YTID_LAST",
    "active_rms",
    "prepare_folder",
    "write_clip",
    "write_csv",
    "write_flac",
    "write_json",
    "write_lines",
    "write_segments",
    "youtube_like_ids",
]
