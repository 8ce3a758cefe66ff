"""Hugging Face datasets as corpora: an ``Audio`` column and a labels column, local or on the Hub, streamed or not."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from clearsep_data.audio import AudioError, audio_duration
from clearsep_data.corpus import BadRow, Clip, Corpus, Skip, check_segment, parse_seconds
from clearsep_data.errors import CorpusError
from clearsep_data.label_space import first_line_of, load_label_space

ID_COLUMNS = ("ytid", "YTID", "video_id", "clip_id", "id")
"""Columns of a Hugging Face corpus that may hold the clip id, first match wins."""


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
            raise CorpusError(f"{source} [{split}]: column {audio_column!r} ({feature}) is not audio: {first_line_of(error)}") from None

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
            except BadRow as bad:
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
                raise BadRow(f"cannot measure the audio's duration: {error.reason}") from None
        check_segment(start, end)
        return start, end

    def _time(self, example: dict, column: str, default: float | None) -> float | None:
        value = example.get(column)
        if value is None:
            return default
        return parse_seconds(str(value), column)

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
                    raise BadRow(f"label index {item} is outside the {len(classes)} classes")
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
        raise CorpusError(f"cannot load the Hugging Face dataset {source!r} (split {split!r}): {first_line_of(error)}") from None


def _class_label_names(feature) -> list[str] | None:
    """The class names when the labels column is a ``ClassLabel`` or a list of them."""
    feature = getattr(feature, "feature", feature)
    return list(feature.names) if hasattr(feature, "names") else None


def _audio_payload(value) -> str | bytes:
    """Encoded bytes of an undecoded ``Audio`` cell, or the path of a local file."""
    if not isinstance(value, dict):
        raise BadRow("audio cell is empty")
    if value.get("bytes"):
        return value["bytes"]
    path = value.get("path")
    if not path:
        raise BadRow("audio cell has neither bytes nor a path")
    if os.path.isfile(path):
        return path
    from datasets.utils.file_utils import xopen

    try:
        with xopen(path, "rb") as handle:
            return handle.read()
    except Exception as error:
        raise BadRow(f"cannot read audio {path}: {error}") from None
