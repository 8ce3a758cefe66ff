"""AudioSet's ontology and 527-class list, shipped with the package (``clearsep_data/data/audioset/``).

Both files are Google's, under CC BY-SA 4.0 (see ``data/audioset/LICENSE``), not ClearSep's Apache-2.0.
Wherever an ontology or class list path is accepted, the value :data:`SHIPPED` (``"audioset"``) names them;
an AudioSet-style folder without its own copies falls back to them (:func:`clearsep_data.label_space.load_label_space`).
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED = "audioset"
"""The value that names the shipped files instead of a path (write ``./audioset`` for a file of that name)."""
FOLDER = Path(__file__).resolve().parent / "data" / "audioset"
ONTOLOGY_PATH = FOLDER / "ontology.json"
CLASS_LABELS_PATH = FOLDER / "class_labels_indices.csv"
ATTRIBUTION = "AudioSet ontology and class list by Google, CC BY-SA 4.0 (https://github.com/audioset/ontology)"


def is_shipped(value: str | os.PathLike | None) -> bool:
    """Whether ``value`` is :data:`SHIPPED` rather than a path."""
    return value is not None and os.fspath(value) == SHIPPED


def ontology_file(value: str | os.PathLike) -> Path:
    """The ontology file ``value`` names: the shipped ``ontology.json`` for :data:`SHIPPED`, else the path itself."""
    return ONTOLOGY_PATH if is_shipped(value) else Path(value)


def class_labels_file(value: str | os.PathLike) -> Path:
    """The class list ``value`` names: the shipped ``class_labels_indices.csv`` for :data:`SHIPPED`, else the path."""
    return CLASS_LABELS_PATH if is_shipped(value) else Path(value)


__all__ = [
    "ATTRIBUTION",
    "CLASS_LABELS_PATH",
    "FOLDER",
    "ONTOLOGY_PATH",
    "SHIPPED",
    "class_labels_file",
    "is_shipped",
    "ontology_file",
]
