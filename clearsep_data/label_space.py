"""A corpus's label space: its ontology and its vocabulary (``class_labels_indices.csv``), and where they are found.

Shared by the corpus readers, the trainer and the evaluation; ``"audioset"`` names the copies shipped with the
package (:mod:`clearsep_data.audioset`).
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

from clearsep_data import audioset
from clearsep_data.errors import CorpusError
from clearsep_data.ontology import Ontology

ONTOLOGY_FILE = "ontology.json"
CLASS_LABELS_FILE = "class_labels_indices.csv"
CSV_ENCODING = "utf-8-sig"
"""How the metadata CSVs are read: UTF-8 with or without the byte-order mark that Excel and Notepad write,
which would otherwise stick to the first field (a comment would no longer start with ``#``, a YTID would gain it)."""


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
            places.append(f"the Hub dataset {hub_repo} ({first_line_of(error)})")
    if fallback is not None:
        return fallback
    raise CorpusError(f"no {filename} in {' or '.join(places)}: {advice}")


_SAID: set[str] = set()


def say_once(message: str) -> None:
    """Print ``message`` on stderr the first time this process says it."""
    if message not in _SAID:
        _SAID.add(message)
        print(message, file=sys.stderr)


def first_line_of(error: Exception) -> str:
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
