"""The benchmark folder: a split of clips with ground-truth references, which evaluation scores a model on.

A *benchmark* is any AudioSet-style folder that :class:`clearsep_data.corpus.AudioSetFolder` reads
(a segments CSV per split: ``{split}_segments.csv``, ``balanced_train_segments.csv`` for
``split="train"``; ``class_labels_indices.csv``; ``ontology.json``; ``audio/{YTID}.*``), plus the
ground truth of its clips in ``references/manifest.csv``::

    ytid,label,path
    --aE2O5G5WE,/m/05tny_,references/--aE2O5G5WE/m_05tny_.flac
    --aE2O5G5WE,/m/09x0r,references/--aE2O5G5WE/m_09x0r.flac
    --aE2O5G5WE,background,references/--aE2O5G5WE/background.flac

One row per source of a clip: ``label`` is the source's most specific MID (or ``background`` for
sound that belongs to no labelled event); ``path`` is relative to the benchmark folder (or
absolute) and points to audio of the clip's segment length, at any rate. The demo corpus
(``clearsep-data demo-corpus``) is written in this layout.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from clearsep_data.corpus import AudioSetFolder
from clearsep_data.errors import ClearSepError
from clearsep_data.label_space import CSV_ENCODING

REFERENCE_MANIFEST = "references/manifest.csv"
MANIFEST_FIELDS = ("ytid", "label", "path")
BACKGROUND = "background"


class BenchmarkError(ClearSepError):
    """A benchmark folder that cannot be evaluated (missing or malformed reference manifest)."""


@dataclass(frozen=True)
class Reference:
    """One ground-truth source of a clip."""

    label: str
    path: Path


def read_reference_manifest(benchmark_dir: str | os.PathLike) -> dict[str, list[Reference]]:
    """The references of every clip of a benchmark, by clip id (``references/manifest.csv``)."""
    root = Path(benchmark_dir)
    manifest = root / REFERENCE_MANIFEST
    if not manifest.is_file():
        raise BenchmarkError(
            f"{manifest}: not found; a benchmark needs ground truth in {REFERENCE_MANIFEST} "
            f"(header {','.join(MANIFEST_FIELDS)}; see `clearsep_data.benchmark_folder`)"
        )
    references: dict[str, list[Reference]] = {}
    with open(manifest, newline="", encoding=CSV_ENCODING) as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in MANIFEST_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise BenchmarkError(f"{manifest}: header lacks {', '.join(missing)} (expected {','.join(MANIFEST_FIELDS)})")
        for line, row in enumerate(reader, start=2):
            values = {name: (row[name] or "").strip() for name in MANIFEST_FIELDS}
            empty = [name for name, value in values.items() if not value]
            if empty:
                raise BenchmarkError(f"{manifest}:{line}: empty {', '.join(empty)}")
            references.setdefault(values["ytid"], []).append(Reference(values["label"], root / values["path"]))
    return references


@dataclass(frozen=True)
class Benchmark:
    """One split of a benchmark folder: its clips and their references."""

    corpus: AudioSetFolder
    split: str
    references: dict[str, list[Reference]]

    @classmethod
    def open(cls, benchmark_dir: str | os.PathLike, split: str = "eval") -> Benchmark:
        """Read ``{split}_segments.csv`` and ``references/manifest.csv``; errors name the file at fault."""
        references = read_reference_manifest(benchmark_dir)
        return cls(AudioSetFolder(benchmark_dir, split=split), split, references)


__all__ = ["BACKGROUND", "REFERENCE_MANIFEST", "Benchmark", "BenchmarkError", "Reference", "read_reference_manifest"]
