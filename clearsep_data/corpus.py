"""Corpus readers: AudioSet-style folders and Hugging Face datasets, as a stream of clips.

A corpus yields, in a deterministic order, one :class:`Clip` per usable row and one
:class:`Skip` per row that cannot be used, with the reason. Nothing is dropped silently.

Two kinds of corpus, chosen by :func:`open_corpus`:

* :class:`AudioSetFolder`: the files AudioSet publishes (a segments CSV, ``class_labels_indices.csv``,
  ``ontology.json``) plus one audio file per segment, named by YTID (``{YTID}.flac`` or
  ``Y{YTID}.wav``, any format FFmpeg reads) in ``audio/`` or in the folder itself.
* :class:`~clearsep_data.hf_corpus.HuggingFaceCorpus`: a dataset with an ``Audio`` column and a labels column, from a local
  folder (``save_to_disk``, parquet or audiofolder layout) or the Hub, optionally streamed.

In both, an audio file holds the segment itself (as AudioSet downloads do): :meth:`Corpus.load`
decodes ``[0, clip.duration)`` of it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsep_data import audioset
from clearsep_data.audio import AudioError, load_audio
from clearsep_data.errors import CorpusError
from clearsep_data.label_space import CSV_ENCODING, locate_label_files, read_class_labels, say_once
from clearsep_data.ontology import Ontology

SILENCE_PEAK_DBFS = -60.0
"""A clip whose peak (after decoding to mono) lies below this level is rejected as silent."""

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".m4a")
"""Audio files an AudioSet folder may hold, in order of preference when a YTID has several."""

DEFAULT_SEGMENTS_FILE = "balanced_train_segments.csv"
SEGMENTS_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", re.ASCII)




@dataclass(frozen=True)
class Clip:
    """One clip of a corpus: where its audio is and what it is labelled with."""

    index: int
    """Position of the row in the corpus (0-based, over all rows, skipped ones included)."""
    clip_id: str
    """The YouTube id (YTID) or the dataset's id for the clip."""
    start_seconds: float
    end_seconds: float
    labels: tuple[str, ...]
    """MIDs, in the order the corpus lists them."""
    audio: str | bytes
    """A path to the audio file, or its encoded bytes (Hugging Face corpora)."""
    where: str
    """Where the row comes from, for messages: ``balanced_train_segments.csv:12``, ``hf:org/name[train][3]``."""

    @property
    def duration(self) -> float:
        return self.end_seconds - self.start_seconds


@dataclass(frozen=True)
class Skip:
    """A row or clip that was not used, and why."""

    index: int
    clip_id: str
    where: str
    reason: str

    def to_dict(self) -> dict:
        return {"index": self.index, "clip_id": self.clip_id, "where": self.where, "reason": self.reason}


class BadRow(Exception):
    """A row that cannot become a clip; the message is the reason."""


class Corpus(ABC):
    """Clips with their labels, the ontology the labels come from and the label vocabulary."""

    def __init__(self, name: str, ontology: Ontology, vocabulary: list[str]):
        self.name = name
        self.ontology = ontology
        self.vocabulary = vocabulary
        """MIDs of ``class_labels_indices.csv``, in index order."""

    @abstractmethod
    def __iter__(self) -> Iterator[Clip | Skip]:
        """Every row, in order, as a :class:`Clip` or a :class:`Skip`."""

    @property
    @abstractmethod
    def num_rows(self) -> int | None:
        """Number of rows (clips and skips), or ``None`` when unknown before iterating (streaming)."""

    def load(self, clip: Clip, sampling_rate: int) -> np.ndarray:
        """The clip as mono float32 at ``sampling_rate``, exactly ``clip.duration`` seconds long.

        Raises :class:`AudioError` naming the file (or row) for corrupt, empty, truncated, too short
        or silent audio (peak below :data:`SILENCE_PEAK_DBFS`).
        """
        name = clip.where if isinstance(clip.audio, bytes) else f"{clip.audio} ({clip.where})"
        try:
            waveform = load_audio(clip.audio, sampling_rate, 0.0, clip.duration)
        except AudioError as error:
            raise AudioError(name, error.reason) from None
        peak = float(np.maximum(waveform.max(), -waveform.min()))  # NaN if any sample is; no copy of a long clip
        if not math.isfinite(peak):
            raise AudioError(name, "audio holds NaN or infinite samples")
        if peak < 10 ** (SILENCE_PEAK_DBFS / 20):
            level = f"{20 * math.log10(peak):.1f} dBFS" if peak > 0 else "digital silence"
            raise AudioError(name, f"audio is silent (peak {level}, below {SILENCE_PEAK_DBFS:g} dBFS)")
        return waveform

    def __repr__(self) -> str:
        shipped = getattr(self, "shipped_label_files", ())
        note = f", shipped_label_files={shipped!r}" if shipped else ""
        return f"{type(self).__name__}(name={self.name!r}, classes={len(self.vocabulary)}{note})"

    def content_digest(self) -> str:
        """A digest of what the corpus lists (its rows, ontology and vocabulary), not of where it lies.

        A resumed build compares it, so a corpus regenerated in place is never mixed with the one it replaced
        (the audio files themselves are checked per block, see :func:`source_stamp`).
        """
        digest = hashlib.sha256(json.dumps([self.ontology.to_entries(), self.vocabulary], sort_keys=True).encode())
        for part in self._listing():
            digest.update(part)
        return digest.hexdigest()[:16]

    @abstractmethod
    def _listing(self) -> Iterator[bytes]:
        """The bytes that identify the rows of the corpus."""

    def _check_labels(self, labels: Iterable[str]) -> tuple[str, ...]:
        """Deduplicated ``labels``; :class:`BadRow` if empty or if some are not in the ontology."""
        labels = tuple(dict.fromkeys(labels))
        if not labels:
            raise BadRow("empty label list")
        unknown = [label for label in labels if label not in self.ontology]
        if unknown:
            raise BadRow(f"label(s) not in the ontology: {', '.join(unknown)}")
        return labels


# --------------------------------------------------------------------------- AudioSet folders


class AudioSetFolder(Corpus):
    """A folder in AudioSet's published format, with the audio of each segment named by YTID."""

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        segments: str | os.PathLike | None = None,
        ontology: str | os.PathLike | None = None,
        split: str = "train",
    ):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise CorpusError(f"{self.root}: not a folder")
        self.segments_path = find_segments_file(self.root, segments, split)
        if next(self._rows(), None) is None:  # else a build "finishes" with an empty dataset
            raise CorpusError(
                f"{self.segments_path} has no data rows (only comments, blank lines or a header): "
                f"add one line per clip, {', '.join(SEGMENTS_COLUMNS)}"
            )
        ontology_path, labels_path = locate_label_files(self.root, ontology, fallback=True)
        shipped = tuple(path.name for path in (ontology_path, labels_path) if path.parent == audioset.FOLDER)
        ontology_obj = Ontology.from_json(ontology_path)
        try:
            vocabulary = read_class_labels(labels_path, ontology_obj)
        except CorpusError:
            if labels_path.parent != audioset.FOLDER or ontology_path.parent == audioset.FOLDER:
                raise
            locate_label_files(self.root, ontology)  # a folder's own non-AudioSet ontology: say the class list is missing
            raise
        super().__init__(self.root.name, ontology_obj, vocabulary)
        self.shipped_label_files = shipped
        """Names of the label files taken from the AudioSet copies shipped with the package (named or fallen back to)."""
        if shipped and not audioset.is_shipped(ontology):
            say_once(
                f"note: {self.root} has no {' or '.join(shipped)}: using the AudioSet "
                f"{' and '.join(shipped)} shipped with clearsep-data ({len(self.vocabulary)} classes; by Google, CC BY-SA 4.0)"
            )
        self._audio_index: dict[str, str] | None = None
        self._num_rows: int | None = None

    @property
    def audio_index(self) -> dict[str, str]:
        """File stem -> audio path over ``audio/`` (recursively) and the folder itself, built once."""
        if self._audio_index is None:
            self._audio_index = index_audio_files(self.root)
        return self._audio_index

    def find_audio(self, ytid: str) -> str | None:
        """The audio file of ``ytid``: ``{YTID}.*``, else the downloaders' ``Y{YTID}.*``."""
        return self.audio_index.get(ytid) or self.audio_index.get("Y" + ytid)

    @property
    def num_rows(self) -> int:
        if self._num_rows is None:
            self._num_rows = sum(1 for _ in self._rows())
        return self._num_rows

    def __iter__(self) -> Iterator[Clip | Skip]:
        first_line: dict[str, str] = {}
        for index, (where, row) in enumerate(self._rows()):
            ytid = row[0].strip() if row else ""
            try:
                ytid, start, end, labels = _parse_segment_row(row)
                labels = self._check_labels(labels)
                if ytid in first_line:
                    raise BadRow(f"YTID already listed at {first_line[ytid]} (one audio file per YTID)")
                first_line[ytid] = where
                audio = self.find_audio(ytid)
                if audio is None:
                    raise BadRow(f"no audio file {ytid}.* or Y{ytid}.* in {self.root / 'audio'} or {self.root}")
            except BadRow as bad:
                yield Skip(index, ytid, where, str(bad))
                continue
            yield Clip(index, ytid, start, end, labels, audio, where)

    def _listing(self) -> Iterator[bytes]:
        with open(self.segments_path, "rb") as handle:
            yield from iter(lambda: handle.read(2**20), b"")

    def _rows(self) -> Iterator[tuple[str, list[str]]]:
        """``(where, fields)`` of each data row; comments, blank lines and a plain header are left out.

        Each line is parsed on its own, so a stray quote spoils one row and not the rest of the file.
        """
        name = self.segments_path.name
        with open(self.segments_path, encoding=CSV_ENCODING, errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                row = next(csv.reader([line], skipinitialspace=True))
                if row[0].strip() == "YTID":  # a plain (uncommented) header line
                    continue
                yield f"{name}:{number}", row


def _parse_segment_row(row: list[str]) -> tuple[str, float, float, list[str]]:
    """``(ytid, start, end, labels)`` of an AudioSet segments row; :class:`BadRow` says what is wrong."""
    if len(row) != len(SEGMENTS_COLUMNS):
        hint = " (is the label list quoted?)" if len(row) > len(SEGMENTS_COLUMNS) else ""
        raise BadRow(f"expected {len(SEGMENTS_COLUMNS)} columns {', '.join(SEGMENTS_COLUMNS)}, found {len(row)}{hint}")
    ytid, start_text, end_text, label_text = (field.strip() for field in row)
    if not ytid:
        raise BadRow("empty YTID")
    start, end = parse_seconds(start_text, "start_seconds"), parse_seconds(end_text, "end_seconds")
    check_segment(start, end)
    return ytid, start, end, [label.strip() for label in label_text.split(",") if label.strip()]


def parse_seconds(text: str, column: str) -> float:
    """A finite, non-negative time in seconds, or :class:`BadRow`."""
    try:
        value = float(text)
    except ValueError:
        raise BadRow(f"{column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise BadRow(f"{column} must be a finite, non-negative number of seconds, found {text!r}")
    return value


def check_segment(start: float, end: float) -> None:
    if end <= start:
        raise BadRow(f"end_seconds ({end:g}) is not after start_seconds ({start:g})")


def find_segments_file(root: Path, segments: str | os.PathLike | None, split: str) -> Path:
    """The segments CSV of a folder: ``segments`` (a name in ``root`` or a path), else by ``split``.

    ``split="train"`` takes ``balanced_train_segments.csv`` if present, else the folder's only
    ``*segments*.csv``; another split takes ``{split}_segments.csv`` (``eval_segments.csv``).
    """
    found = sorted(path.name for path in root.glob("*segments*.csv"))
    if segments is not None:
        for candidate in (root / segments, Path(segments)):
            if candidate.is_file():
                return candidate
        raise CorpusError(f"segments file {os.fspath(segments)!r} not found in {root} (found: {found or 'none'})")
    wanted = DEFAULT_SEGMENTS_FILE if split == "train" else f"{split}_segments.csv"
    if (root / wanted).is_file():
        return root / wanted
    if split == "train" and len(found) == 1:
        return root / found[0]
    if not found:
        raise CorpusError(f"{root}: no segments CSV (*segments*.csv, e.g. {DEFAULT_SEGMENTS_FILE})")
    raise CorpusError(f"{root}: no {wanted} for split {split!r}; choose one with segments= among {found}")


def index_audio_files(root: Path) -> dict[str, str]:
    """File stem -> path of every audio file under ``root/audio`` (recursively) and directly in ``root``.

    When a stem occurs more than once the choice is deterministic: ``audio/`` before the folder,
    shallower before deeper, then :data:`AUDIO_EXTENSIONS` order, then path.
    """
    candidates: list[tuple[tuple, str, str]] = []

    def add(folder: str, depth: int, rank: int) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                suffix = os.path.splitext(entry.name)[1].lower()
                if suffix in AUDIO_EXTENSIONS and entry.is_file():
                    stem = entry.name[: -len(suffix)]
                    candidates.append(((rank, depth, AUDIO_EXTENSIONS.index(suffix), entry.path), stem, entry.path))

    audio_dir = root / "audio"
    if audio_dir.is_dir():
        for folder, _, _ in os.walk(audio_dir):
            add(folder, len(Path(folder).relative_to(audio_dir).parts), 0)
    add(os.fspath(root), 0, 1)
    index: dict[str, str] = {}
    for _, stem, path in sorted(candidates):
        index.setdefault(stem, path)
    return index


# --------------------------------------------------------------------------- entry points


def open_corpus(
    source: str,
    *,
    segments: str | None = None,
    ontology: str | None = None,
    split: str = "train",
    labels_column: str = "labels",
    audio_column: str = "audio",
    streaming: bool = False,
) -> Corpus:
    """Open ``source``: an AudioSet folder (or its segments CSV), a local dataset folder, or a Hub id.

    A folder holding a ``*segments*.csv`` (or given ``segments=``) is read as an AudioSet folder;
    any other folder, and a Hub id such as ``org/name`` (see :func:`is_hub_dataset_id`), as a Hugging Face dataset.
    """
    from clearsep_data.hf_corpus import HuggingFaceCorpus  # imports datasets only for dataset corpora

    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".csv":
        return AudioSetFolder(path.parent, segments=path, ontology=ontology, split=split)
    if path.is_dir():
        if segments is not None or any(path.glob("*segments*.csv")):
            return AudioSetFolder(path, segments=segments, ontology=ontology, split=split)
        return HuggingFaceCorpus(
            source, split=split, ontology=ontology, labels_column=labels_column, audio_column=audio_column, streaming=streaming
        )
    if path.exists():
        raise CorpusError(f"{source}: expected a folder, a segments CSV or a Hugging Face dataset id")
    if segments is not None or not is_hub_dataset_id(source):
        raise CorpusError(f"corpus folder {source} does not exist (check the path; a Hub dataset id looks like 'org/name')")
    return HuggingFaceCorpus(
        source, split=split, ontology=ontology, labels_column=labels_column, audio_column=audio_column, streaming=streaming
    )


def is_hub_dataset_id(source: str) -> bool:
    """Whether ``source``, missing locally, is to be looked up on the Hub rather than reported as a missing folder.

    It must have the form of a Hub id, ``name`` or ``org/name`` in the Hub's characters (so nothing starting
    with ``.``, ``/`` or ``~``, and at most one ``/``), and ``org`` must not be a local folder: ``runs/corpsu``
    next to a folder ``runs`` is a typo, and looking it up on the Hub would cost half a minute of retries.
    """
    org, _, _ = source.rpartition("/")
    return bool(_HUB_ID.fullmatch(source)) and not (org and Path(org).is_dir())


def write_skips(path: str | os.PathLike, skips: Iterable[Skip]) -> int:
    """Write ``skips`` as JSON lines (one :meth:`Skip.to_dict` per line); returns how many."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for skip in skips:
            handle.write(json.dumps(skip.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_skips(path: str | os.PathLike) -> list[Skip]:
    """Read a skip list written by :func:`write_skips`; :class:`CorpusError` names a malformed line."""
    skips = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                skips.append(Skip(int(entry["index"]), str(entry["clip_id"]), str(entry["where"]), str(entry["reason"])))
            except (ValueError, KeyError, TypeError) as error:
                raise CorpusError(f"{path}:{number}: not a skip entry ({error})") from None
    return skips
