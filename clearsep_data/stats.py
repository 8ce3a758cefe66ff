"""Statistics of a track dataset: counts per class and split, quality distributions, reject reasons.

Only the metadata columns of the parquet shards are read (never the audio column), so the
statistics of a large dataset cost a fraction of its size in I/O and no audio decoding; for a Hub
dataset id only those column chunks are downloaded.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from clearsep_data.errors import ClearSepError
from clearsep_data.tracks import DATA_DIR, LATER_FIELDS, QUALITY_FIELDS, REJECTED_SPLIT, TrackCounts, shard_split

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
STATS_COLUMNS: tuple[str, ...] = (
    "label", "label_name", "origin", "start_seconds", "end_seconds", *QUALITY_FIELDS,
    "iteration", "model", "thresholds", "reject_reason",
)  # fmt: skip
PROVENANCE_FILES: tuple[str, ...] = ("build.json", "summary.json")
"""Files an engine run may leave next to ``data/``; staged with the dataset and quoted in its card."""
HISTOGRAM_BINS = 30
_NUMERIC = re.compile(r"^-?\d[\d.,]*(?: ?(?:%|[kMGT]?B))?$")
_CHECK = re.compile(r"^(?P<field>[A-Za-z_]+) \S+ (?P<op>[<>]=?) (?P<bound>\S+)$")
_MEASURED = re.compile(r" \([-+\d.]+ dB\)")
"""A track's own measurement inside a reason ("near-silent (-41.3 dB)"), left out when reasons are counted."""


class StatsError(ClearSepError):
    """A dataset whose statistics cannot be computed, with the file and the reason."""


@dataclass
class SplitSummary:
    name: str
    num_examples: int
    hours: float
    """Total duration of the split's tracks (each track spans its clip's segment)."""
    num_bytes: int
    """Uncompressed size of the split's rows (parquet metadata), as ``datasets`` reports it."""
    download_size: int
    """Size of the split's parquet files."""
    files: list[str]


@dataclass
class ClassCount:
    label: str
    label_name: str
    accepted: int = 0
    rejected: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        total = self.accepted + self.rejected
        return self.accepted / total if total else None


@dataclass
class Distribution:
    """Summary of one quality field over a group of tracks (nulls and non-finite values left out)."""

    count: int
    missing: int
    mean: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    """``{"q05": ..., "q25": ..., "q50": ..., ...}``."""


@dataclass
class Histogram:
    """Counts of one quality field per group over shared bin edges."""

    edges: list[float]
    counts: dict[str, list[int]]


@dataclass
class SummaryTable:
    """A table of the summary, rendered by the CLI (rich) and the dataset card (markdown)."""

    title: str
    columns: list[str]
    rows: list[list[str]]

    def numeric(self) -> list[bool]:
        """Per column: does it hold numbers (counts, dB, percentages, sizes)? Such columns are right-aligned."""
        cells = [[str(row[i]) for row in self.rows if str(row[i])] for i in range(len(self.columns))]
        return [bool(column) and all(_NUMERIC.match(cell) for cell in column) for column in cells]

    def to_markdown(self) -> str:
        """A GitHub-flavoured markdown table (as the Hub renders cards), numbers right-aligned."""
        def line(cells) -> str:
            return "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"

        rule = "|" + "".join("---:|" if numeric else "---|" for numeric in self.numeric())
        return "\n".join([line(self.columns), rule, *(line(row) for row in self.rows)])


@dataclass
class DatasetStats:
    """What ``clearsep-data stats`` reports about a track dataset.

    Groups are ``accepted`` (every split but ``rejected``) and ``rejected``.
    """

    source: str
    sampling_rate: int | None
    splits: dict[str, SplitSummary]
    classes: list[ClassCount]
    origins: dict[str, dict[str, int]]
    """split -> origin -> number of tracks."""
    quality: dict[str, dict[str, Distribution]]
    """quality field -> group -> distribution."""
    histograms: dict[str, Histogram]
    reject_reasons: dict[str, int]
    """Failed check (``re_sdr < 10``) or other reason -> number of rejected tracks it applies to."""
    iterations: dict[int, int]
    models: dict[str, int]
    thresholds: dict[str, int]
    """Distinct ``thresholds`` JSON values -> number of tracks."""
    provenance: dict[str, dict] = field(default_factory=dict)
    """Parsed ``build.json`` / ``summary.json`` of the dataset folder, when present."""

    @property
    def num_accepted(self) -> int:
        return sum(split.num_examples for name, split in self.splits.items() if name != REJECTED_SPLIT)

    @property
    def num_rejected(self) -> int:
        split = self.splits.get(REJECTED_SPLIT)
        return split.num_examples if split else 0

    def to_dict(self) -> dict:
        """A JSON-serialisable dict of everything above (class acceptance rates included)."""
        data = asdict(self)
        for entry, counts in zip(data["classes"], self.classes):
            entry["acceptance_rate"] = counts.acceptance_rate
        data["iterations"] = {str(key): value for key, value in self.iterations.items()}
        data["num_accepted"], data["num_rejected"] = self.num_accepted, self.num_rejected
        return data


def compute_stats(dataset_dir_or_id: str | os.PathLike) -> DatasetStats:
    """Statistics of the track dataset in a local folder or on the Hub (``org/name`` or ``org/name@revision``)."""
    import pyarrow as pa

    source = os.fspath(dataset_dir_or_id)
    files = DatasetFiles.locate(source)
    columns: dict[str, dict[str, list]] = {}
    splits: dict[str, SplitSummary] = {}
    sampling_rate = None
    counts = TrackCounts()
    for split, paths in files.shards().items():
        tables = []
        num_bytes = download_size = 0
        for path in paths:
            table, metadata, rate = _read_metadata_columns(files, path)
            tables.append(table)
            num_bytes += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
            download_size += files.fs.size(path)
            sampling_rate = sampling_rate or rate
        table = pa.concat_tables(tables)
        columns[split] = values = table.to_pydict()
        counts.add(split, values)
        hours = sum(end - start for start, end in zip(values["start_seconds"], values["end_seconds"])) / 3600
        in_repo = [files.relative(path) for path in paths]
        splits[split] = SplitSummary(split, table.num_rows, hours, num_bytes, download_size, in_repo)
    groups = {"accepted": [s for s in columns if s != REJECTED_SPLIT], "rejected": [s for s in columns if s == REJECTED_SPLIT]}
    grouped = {group: _concat([columns[s] for s in names]) for group, names in groups.items() if names}
    quality = {name: {group: _distribution(values[name]) for group, values in grouped.items()} for name in QUALITY_FIELDS}
    return DatasetStats(
        source=source,
        sampling_rate=sampling_rate,
        splits=splits,
        classes=_class_counts(counts),
        origins={split: dict(sorted(origins.items())) for split, origins in counts.origins.items()},
        quality=quality,
        histograms={name: _histogram({g: v[name] for g, v in grouped.items()}) for name in QUALITY_FIELDS},
        reject_reasons=_reject_reasons(grouped.get("rejected", {}).get("reject_reason", [])),
        iterations=dict(sorted(Counter(_all(columns, "iteration")).items())),
        models=dict(Counter(model for model in _all(columns, "model") if model).most_common()),
        thresholds=dict(Counter(value for value in _all(columns, "thresholds") if value).most_common()),
        provenance=files.provenance(),
    )


@dataclass(frozen=True)
class DatasetFiles:
    """The files of a track dataset: a local folder, or a Hub dataset repository read over ``HfFileSystem``.

    On the Hub only the parquet footers and the requested column chunks are fetched (HTTP range
    requests), so statistics of a large dataset do not download its audio.
    """

    fs: object
    """An fsspec filesystem (local, or ``huggingface_hub.HfFileSystem``)."""
    root: str

    @classmethod
    def locate(cls, source: str | os.PathLike) -> DatasetFiles:
        source = os.fspath(source)
        if os.path.isdir(source):
            from fsspec.implementations.local import LocalFileSystem

            return cls(LocalFileSystem(), Path(source).resolve().as_posix())
        repo_id, _, revision = source.partition("@")
        if os.path.exists(source) or repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
            raise StatsError(f"{source}: not a dataset folder nor a Hub dataset id ('org/name')")
        from urllib.parse import quote

        from huggingface_hub import HfFileSystem

        root = f"datasets/{repo_id}" + (f"@{quote(revision, safe='')}" if revision else "")
        files = cls(HfFileSystem(), root)
        try:
            found = files.fs.exists(root)
        except Exception as error:  # network and HTTP errors of the Hub client
            raise StatsError(f"{source}: cannot reach the dataset on the Hub ({str(error).splitlines()[0]})") from None
        if not found:
            raise StatsError(f"{source}: no such dataset (or revision) on the Hub")
        return files

    def relative(self, path: str) -> str:
        return path[len(self.root) + 1 :] if path.startswith(self.root + "/") else path

    def shards(self) -> dict[str, list[str]]:
        """``data/{split}-XXXXX-of-YYYYY.parquet`` paths by split, in name order (accepted splits first)."""
        shards: dict[str, list[str]] = {}
        for path in sorted(self.fs.glob(f"{self.root}/{DATA_DIR}/*.parquet")):
            split = shard_split(path.rsplit("/", 1)[-1])
            if split is None:
                raise StatsError(f"{path}: not a shard name ('{{split}}-00000-of-00001.parquet')")
            shards.setdefault(split, []).append(path)
        if not shards:
            raise StatsError(f"{self.root}: no parquet shards under data/ (expected data/train-00000-of-00001.parquet)")
        return dict(sorted(shards.items(), key=lambda item: (item[0] == REJECTED_SPLIT, item[0])))

    def provenance(self) -> dict[str, dict]:
        """The JSON provenance files present at the root (``build.json``, ``summary.json``)."""
        found = {}
        for name in PROVENANCE_FILES:
            path = f"{self.root}/{name}"
            if self.fs.isfile(path):
                try:
                    found[name] = json.loads(self.fs.cat_file(path).decode("utf-8"))
                except (OSError, ValueError) as error:
                    raise StatsError(f"{path}: cannot read JSON ({error})") from None
        return found


def summary_tables(stats: DatasetStats) -> list[SummaryTable]:
    """The summary as tables: splits, classes, origins, quality quantiles, reject reasons, provenance."""
    tables = [
        SummaryTable(
            "Splits",
            ["split", "tracks", "hours", "uncompressed size", "parquet size"],
            [
                [s.name, str(s.num_examples), f"{s.hours:.2f}", human_bytes(s.num_bytes), human_bytes(s.download_size)]
                for s in stats.splits.values()
            ],
        ),
        SummaryTable(
            "Tracks per class",
            ["class", "MID", "accepted", "rejected", "acceptance rate"],
            [
                [c.label_name, c.label, str(c.accepted), str(c.rejected), _percent(c.acceptance_rate)]
                for c in stats.classes
            ],
        ),
    ]
    origins = sorted({origin for counts in stats.origins.values() for origin in counts})
    tables.append(
        SummaryTable(
            "Origins",
            ["split", *origins],
            [[split, *(str(counts.get(origin, 0)) for origin in origins)] for split, counts in stats.origins.items()],
        )
    )
    quantile_names = [f"q{round(q * 100):02d}" for q in QUANTILES]
    rows = []
    for name, groups in stats.quality.items():
        for group, dist in groups.items():
            rows.append(
                [name, group, str(dist.count), str(dist.missing)] + [_number(dist.quantiles.get(q)) for q in quantile_names]
            )
    tables.append(SummaryTable("Quality (dB)", ["field", "group", "n", "null", *quantile_names], rows))
    if stats.num_rejected:
        tables.append(
            SummaryTable(
                "Reject reasons",
                ["reason", "tracks", "share of rejected"],
                [[reason, str(n), _percent(n / stats.num_rejected)] for reason, n in stats.reject_reasons.items()],
            )
        )
    provenance_rows = [["iteration", str(value), str(n)] for value, n in stats.iterations.items()]
    provenance_rows += [["model", value, str(n)] for value, n in stats.models.items()]
    provenance_rows += [["thresholds", value, str(n)] for value, n in stats.thresholds.items()]
    tables.append(SummaryTable("Provenance", ["column", "value", "tracks"], provenance_rows))
    return tables


def open_shard(path: str | os.PathLike, fs=None):
    """A track dataset shard as a ``pyarrow.parquet.ParquetFile`` and its ``datasets.Features``.

    ``fs`` is the fsspec filesystem of ``path`` (local when omitted). Raises :class:`StatsError`
    naming the file when it is unreadable or lacks track columns.
    """
    import pyarrow.parquet as pq
    from datasets import Features

    try:
        parquet = pq.ParquetFile(fs.open(path, "rb") if fs is not None else path)
    except Exception as error:  # pyarrow raises ArrowInvalid/OSError for anything unreadable
        raise StatsError(f"{path}: not a readable parquet file ({error})") from None
    schema = parquet.schema_arrow
    missing = [name for name in ("audio", *STATS_COLUMNS) if name not in schema.names]
    if missing:
        raise StatsError(f"{path}: not a track dataset shard, missing column(s) {missing}")
    if not schema.metadata or b"huggingface" not in schema.metadata:
        raise StatsError(f"{path}: no `datasets` features in the parquet metadata (write it with datasets)")
    return parquet, Features.from_arrow_schema(schema)


def _read_metadata_columns(files: DatasetFiles, path: str):
    """The statistics columns of one shard (no audio), its parquet metadata and its audio sampling rate."""
    from datasets import Audio

    parquet, features = open_shard(path, files.fs)
    audio = features["audio"]
    rate = audio.sampling_rate if isinstance(audio, Audio) else None
    present = set(parquet.schema_arrow.names)
    table = parquet.read(columns=[name for name in STATS_COLUMNS if name in present or name not in LATER_FIELDS])
    for name in LATER_FIELDS:
        if name not in present:  # a dataset built before the field existed
            table = table.append_column(name, pa.nulls(table.num_rows, pa.float32()))
    return table, parquet.metadata, rate


def _concat(parts: list[dict[str, list]]) -> dict[str, list]:
    return {name: [value for part in parts for value in part[name]] for name in STATS_COLUMNS}


def _all(columns: dict[str, dict[str, list]], name: str) -> list:
    return [value for values in columns.values() for value in values[name]]


def _finite(values: list) -> np.ndarray:
    array = np.array([value for value in values if value is not None], dtype=np.float64)
    return array[np.isfinite(array)]


def _distribution(values: list) -> Distribution:
    finite = _finite(values)
    if finite.size == 0:
        return Distribution(count=0, missing=len(values))
    quantiles = np.quantile(finite, QUANTILES)
    return Distribution(
        count=int(finite.size),
        missing=len(values) - int(finite.size),
        mean=float(finite.mean()),
        minimum=float(finite.min()),
        maximum=float(finite.max()),
        quantiles={f"q{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, quantiles)},
    )


def _histogram(values_by_group: dict[str, list]) -> Histogram:
    finite = {group: _finite(values) for group, values in values_by_group.items()}
    pooled = np.concatenate([values for values in finite.values()] or [np.empty(0)])
    if pooled.size == 0:
        return Histogram(edges=[], counts={})
    edges = np.histogram_bin_edges(pooled, bins=HISTOGRAM_BINS)
    counts = {group: np.histogram(values, bins=edges)[0].tolist() for group, values in finite.items() if values.size}
    return Histogram(edges=edges.tolist(), counts=counts)


def _class_counts(counts: TrackCounts) -> list[ClassCount]:
    classes: dict[str, ClassCount] = {}
    for split, per_class in counts.classes.items():
        group = "rejected" if split == REJECTED_SPLIT else "accepted"
        for (label, name), count in per_class.items():
            entry = classes.setdefault(label, ClassCount(label, name or label))
            setattr(entry, group, getattr(entry, group) + count)
    return sorted(classes.values(), key=lambda c: (-(c.accepted + c.rejected), c.label_name))


def _reject_reasons(reasons: list[str]) -> dict[str, int]:
    """Count failed checks (``"re_sdr 3.2 < 10; leakage_db -4.0 > -10"`` counts for two checks)."""
    counts: Counter[str] = Counter()
    for reason in reasons:
        parts = [part.strip() for part in (reason or "").split(";") if part.strip()] or ["(no reason given)"]
        for part in parts:
            check = _CHECK.match(part)
            counts[f"{check['field']} {check['op']} {check['bound']}" if check else _MEASURED.sub("", part)] += 1
    return dict(counts.most_common())


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def human_bytes(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"

