"""Corpus readers: AudioSet-style folders and Hugging Face datasets, as a stream of clips.

A corpus yields, in a deterministic order, one :class:`Clip` per usable row and one
:class:`Skip` per row that cannot be used, with the reason. Nothing is dropped silently.

Two kinds of corpus, chosen by :func:`open_corpus`:

* :class:`AudioSetFolder`: the files AudioSet publishes (a segments CSV, ``class_labels_indices.csv``,
  ``ontology.json``) plus one audio file per segment, named by YTID (``{YTID}.flac`` or
  ``Y{YTID}.wav``, any format FFmpeg reads) in ``audio/`` or in the folder itself.
* :class:`HuggingFaceCorpus`: a dataset with an ``Audio`` column and a labels column, from a local
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
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearsep_data import audioset
from clearsep_data.audio import AudioError, audio_duration, load_audio
from clearsep_data.errors import ClearSepError
from clearsep_data.ontology import Ontology

SILENCE_PEAK_DBFS = -60.0
"""A clip whose peak (after decoding to mono) lies below this level is rejected as silent."""

AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".m4a")
"""Audio files an AudioSet folder may hold, in order of preference when a YTID has several."""

ONTOLOGY_FILE = "ontology.json"
CLASS_LABELS_FILE = "class_labels_indices.csv"
DEFAULT_SEGMENTS_FILE = "balanced_train_segments.csv"
SEGMENTS_COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")
ID_COLUMNS = ("ytid", "YTID", "video_id", "clip_id", "id")
"""Columns of a Hugging Face corpus that may hold the clip id, first match wins."""
CSV_ENCODING = "utf-8-sig"
"""How the metadata CSVs are read: UTF-8 with or without the byte-order mark that Excel and Notepad write,
which would otherwise stick to the first field (a comment would no longer start with ``#``, a YTID would gain it)."""

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", re.ASCII)


class CorpusError(ClearSepError):
    """A corpus that cannot be opened: unknown source, missing or malformed metadata files."""


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


class _BadRow(Exception):
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
        if not np.isfinite(waveform).all():
            raise AudioError(name, "audio holds NaN or infinite samples")
        peak = float(np.abs(waveform).max())
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
        """Deduplicated ``labels``; :class:`_BadRow` if empty or if some are not in the ontology."""
        labels = tuple(dict.fromkeys(labels))
        if not labels:
            raise _BadRow("empty label list")
        unknown = [label for label in labels if label not in self.ontology]
        if unknown:
            raise _BadRow(f"label(s) not in the ontology: {', '.join(unknown)}")
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
            _say_once(
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
                    raise _BadRow(f"YTID already listed at {first_line[ytid]} (one audio file per YTID)")
                first_line[ytid] = where
                audio = self.find_audio(ytid)
                if audio is None:
                    raise _BadRow(f"no audio file {ytid}.* or Y{ytid}.* in {self.root / 'audio'} or {self.root}")
            except _BadRow as bad:
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
    """``(ytid, start, end, labels)`` of an AudioSet segments row; :class:`_BadRow` says what is wrong."""
    if len(row) != len(SEGMENTS_COLUMNS):
        hint = " (is the label list quoted?)" if len(row) > len(SEGMENTS_COLUMNS) else ""
        raise _BadRow(f"expected {len(SEGMENTS_COLUMNS)} columns {', '.join(SEGMENTS_COLUMNS)}, found {len(row)}{hint}")
    ytid, start_text, end_text, label_text = (field.strip() for field in row)
    if not ytid:
        raise _BadRow("empty YTID")
    start, end = _parse_seconds(start_text, "start_seconds"), _parse_seconds(end_text, "end_seconds")
    _check_segment(start, end)
    return ytid, start, end, [label.strip() for label in label_text.split(",") if label.strip()]


def _parse_seconds(text: str, column: str) -> float:
    """A finite, non-negative time in seconds, or :class:`_BadRow`."""
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(f"{column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise _BadRow(f"{column} must be a finite, non-negative number of seconds, found {text!r}")
    return value


def _check_segment(start: float, end: float) -> None:
    if end <= start:
        raise _BadRow(f"end_seconds ({end:g}) is not after start_seconds ({start:g})")


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


# --------------------------------------------------------------------------- label space


def load_label_space(
    folder: Path | None, ontology: str | os.PathLike | None, hub_repo: str | None = None, *, fallback: bool = False
) -> tuple[Ontology, list[str]]:
    """The ontology and the vocabulary (``class_labels_indices.csv`` MIDs, in index order) of a corpus.

    See :func:`locate_label_files` for where the two files are looked for.
    """
    ontology_path, labels_path = locate_label_files(folder, ontology, hub_repo, fallback=fallback)
    parsed = Ontology.from_json(ontology_path)
    return parsed, read_class_labels(labels_path, parsed)


def locate_label_files(
    folder: Path | None, ontology: str | os.PathLike | None, hub_repo: str | None = None, *, fallback: bool = False
) -> tuple[Path, Path]:
    """The ``ontology.json`` and ``class_labels_indices.csv`` of a corpus.

    ``ontology.json`` is ``ontology`` if given (``"audioset"``: the copy shipped with the package, see
    :mod:`clearsep_data.audioset`), else the one in ``folder``, else the one of the Hub dataset ``hub_repo``.
    ``class_labels_indices.csv`` is looked for in ``folder``, next to the ontology file, then in ``hub_repo``.
    With ``fallback`` (AudioSet-style folders), a file found nowhere is the shipped AudioSet one instead of an error.
    """
    if ontology is not None:
        ontology_path = audioset.ontology_file(ontology)
        if not ontology_path.is_file():
            raise CorpusError(f"{ontology_path}: ontology file not found")
    else:
        ontology_path = _locate(
            ONTOLOGY_FILE,
            [folder],
            hub_repo,
            "pass ontology=PATH (AudioSet's ontology.json, https://github.com/audioset/ontology), "
            f"or ontology={audioset.SHIPPED} for the copy shipped with clearsep-data",
            audioset.ONTOLOGY_PATH if fallback else None,
        )
    labels_path = _locate(
        CLASS_LABELS_FILE,
        [folder, ontology_path.parent],
        hub_repo,
        "place AudioSet's class_labels_indices.csv (header index,mid,display_name) next to the ontology",
        audioset.CLASS_LABELS_PATH if fallback else None,
    )
    return ontology_path, labels_path


def _locate(filename: str, folders: list[Path | None], hub_repo: str | None, advice: str, fallback: Path | None = None) -> Path:
    """``filename`` in the first of ``folders`` holding it, else from the Hub dataset ``hub_repo``, else ``fallback``."""
    folders = list(dict.fromkeys(folder for folder in folders if folder is not None))
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    places = [str(folder) for folder in folders]
    if hub_repo is not None:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(hub_repo, filename, repo_type="dataset"))
        except Exception as error:  # not in the repository, no network, gated: say which
            places.append(f"the Hub dataset {hub_repo} ({_first_line(error)})")
    if fallback is not None:
        return fallback
    raise CorpusError(f"no {filename} in {' or '.join(places)}: {advice}")


_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Print ``message`` on stderr the first time this process says it."""
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_class_labels(path: str | os.PathLike, ontology: Ontology) -> list[str]:
    """MIDs of AudioSet's ``class_labels_indices.csv`` (``index,mid,display_name``) in index order.

    Raises :class:`CorpusError` naming the file and line for a malformed file or a MID that is
    not in ``ontology``.
    """
    by_index: dict[int, str] = {}
    try:
        with open(path, newline="", encoding=CSV_ENCODING) as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = [field.strip() for field in next(reader, [])]
            if header != ["index", "mid", "display_name"]:
                raise CorpusError(f"{path}:1: expected the header 'index,mid,display_name', found {','.join(header)!r}")
            for row in reader:
                if not row:
                    continue
                where = f"{path}:{reader.line_num}"
                if len(row) != 3:
                    raise CorpusError(f"{where}: expected 3 columns (index, mid, display_name), found {len(row)}")
                index_text, mid = row[0].strip(), row[1].strip()
                if not index_text.isdigit():
                    raise CorpusError(f"{where}: index {index_text!r} is not a non-negative integer")
                if int(index_text) in by_index:
                    raise CorpusError(f"{where}: index {index_text} is listed twice")
                if mid in by_index.values():
                    raise CorpusError(f"{where}: MID {mid} is listed twice")
                if mid not in ontology:
                    raise CorpusError(f"{where}: MID {mid!r} is not in the ontology")
                by_index[int(index_text)] = mid
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"{path}: cannot read class labels ({error})") from None
    if not by_index:
        raise CorpusError(f"{path}: no classes listed")
    return [by_index[index] for index in sorted(by_index)]


# --------------------------------------------------------------------------- Hugging Face datasets


class HuggingFaceCorpus(Corpus):
    """A Hugging Face dataset with an ``Audio`` column and a labels column (MIDs or display names).

    ``labels_column`` may hold a list of MIDs or display names, one comma-separated string of them
    (display names that contain commas, like ``Chirp, tweet``, are recognised), or class indices
    (of a ``ClassLabel`` feature, else positions in the vocabulary).
    Optional ``start_seconds``/``end_seconds`` columns give the segment; without them the segment is
    the whole audio (its duration is measured while iterating). The audio column is read undecoded,
    so each clip carries its encoded bytes (or a local path) and memory stays flat, streaming or not.
    """

    def __init__(
        self,
        source: str,
        *,
        split: str = "train",
        ontology: str | os.PathLike | None = None,
        labels_column: str = "labels",
        audio_column: str = "audio",
        streaming: bool = False,
    ):
        from datasets import Audio

        local = Path(source)
        is_local = local.is_dir()
        name = local.resolve().name if is_local else source
        ontology_obj, vocabulary = load_label_space(local if is_local else None, ontology, None if is_local else source)
        super().__init__(name, ontology_obj, vocabulary)
        self.split = split
        self.labels_column = labels_column
        self.audio_column = audio_column
        dataset = _load_dataset(source, split, streaming, is_local)
        columns = list(dataset.features or {})
        missing = [column for column in (audio_column, labels_column) if column not in columns]
        if missing:
            raise CorpusError(f"{source} [{split}]: no column {' or '.join(map(repr, missing))} (columns: {columns})")
        self.id_column = next((column for column in ID_COLUMNS if column in columns), None)
        self.time_columns = [column for column in ("start_seconds", "end_seconds") if column in columns]
        self._label_names = _class_label_names(dataset.features[labels_column])
        wanted = [audio_column, labels_column, *([self.id_column] if self.id_column else []), *self.time_columns]
        try:
            self.dataset = dataset.select_columns(wanted).cast_column(audio_column, Audio(decode=False))
        except Exception as error:  # datasets/pyarrow cast errors of several types
            feature = dataset.features[audio_column]
            raise CorpusError(f"{source} [{split}]: column {audio_column!r} ({feature}) is not audio: {_first_line(error)}") from None

    @property
    def num_rows(self) -> int | None:
        return getattr(self.dataset, "num_rows", None)

    def __iter__(self) -> Iterator[Clip | Skip]:
        for index, example in enumerate(self.dataset):
            where = f"hf:{self.name}[{self.split}][{index}]"
            clip_id = str(example[self.id_column]) if self.id_column and example[self.id_column] is not None else ""
            clip_id = clip_id or f"{self.split}-{index:06d}"
            try:
                labels = self._check_labels(self._resolve_labels(example[self.labels_column]))
                audio = _audio_payload(example[self.audio_column])
                start, end = self._segment(example, audio)
            except _BadRow as bad:
                yield Skip(index, clip_id, where, str(bad))
                continue
            yield Clip(index, clip_id, start, end, labels, audio, where)

    def _segment(self, example: dict, audio: str | bytes) -> tuple[float, float]:
        start = self._time(example, "start_seconds", 0.0)
        end = self._time(example, "end_seconds", None)
        if end is None:
            try:
                end = start + audio_duration(audio)
            except AudioError as error:
                raise _BadRow(f"cannot measure the audio's duration: {error.reason}") from None
        _check_segment(start, end)
        return start, end

    def _time(self, example: dict, column: str, default: float | None) -> float | None:
        value = example.get(column)
        if value is None:
            return default
        return _parse_seconds(str(value), column)

    def _resolve_labels(self, value) -> list[str]:
        """MIDs for a labels cell; names that resolve to nothing are kept as they are (reported later)."""
        if value is None:
            return []
        if isinstance(value, str):
            return self._split_label_string(value)
        labels = []
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                classes = self._label_names or self.vocabulary
                if not 0 <= item < len(classes):
                    raise _BadRow(f"label index {item} is outside the {len(classes)} classes")
                item = classes[item]
            labels.extend(self._split_label_string(str(item)))
        return labels

    def _split_label_string(self, text: str) -> list[str]:
        """Split ``"Dog, Chirp, tweet"`` into labels, joining parts that form one display name."""
        parts = [part.strip() for part in text.split(",")]
        labels, start = [], 0
        while start < len(parts):
            for stop in range(len(parts), start, -1):
                candidate = self._resolve(", ".join(parts[start:stop]))
                if candidate in self.ontology:
                    break
            else:
                stop, candidate = start + 1, parts[start]
            if candidate:
                labels.append(candidate)
            start = stop
        return labels

    def _listing(self) -> Iterator[bytes]:
        # datasets' fingerprint follows the data files of a loaded dataset; a stream has none before it is read.
        yield f"{self.name}[{self.split}]:{getattr(self.dataset, '_fingerprint', None)}".encode()

    def _resolve(self, label: str) -> str:
        try:
            return self.ontology.resolve(label)
        except KeyError:
            return label


def _load_dataset(source: str, split: str, streaming: bool, is_local: bool):
    """The ``split`` of a local dataset folder or Hub dataset; :class:`CorpusError` if it cannot load."""
    import datasets

    try:
        if is_local and any((Path(source) / marker).is_file() for marker in ("state.json", "dataset_dict.json")):
            dataset = datasets.load_from_disk(source)
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise CorpusError(f"{source}: no split {split!r} (splits: {list(dataset)})")
                dataset = dataset[split]
            return dataset.to_iterable_dataset() if streaming else dataset
        return datasets.load_dataset(source, split=split, streaming=streaming)
    except CorpusError:
        raise
    except Exception as error:
        raise CorpusError(f"cannot load the Hugging Face dataset {source!r} (split {split!r}): {_first_line(error)}") from None


def _class_label_names(feature) -> list[str] | None:
    """The class names when the labels column is a ``ClassLabel`` or a list of them."""
    feature = getattr(feature, "feature", feature)
    return list(feature.names) if hasattr(feature, "names") else None


def _audio_payload(value) -> str | bytes:
    """Encoded bytes of an undecoded ``Audio`` cell, or the path of a local file."""
    if not isinstance(value, dict):
        raise _BadRow("audio cell is empty")
    if value.get("bytes"):
        return value["bytes"]
    path = value.get("path")
    if not path:
        raise _BadRow("audio cell has neither bytes nor a path")
    if os.path.isfile(path):
        return path
    from datasets.utils.file_utils import xopen

    try:
        with xopen(path, "rb") as handle:
            return handle.read()
    except Exception as error:
        raise _BadRow(f"cannot read audio {path}: {error}") from None


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
