"""The output folder of a build: its file names, its lock, and the protocol open → commit blocks → finish.

Work is cut into *blocks* of consecutive corpus rows. A block is committed atomically (its files are
written to a temporary folder which is then renamed), so a killed build never leaves a half-written
block and a rerun redoes only uncommitted blocks. Each process writes its blocks' parquet files in their
final form; finishing hard-links them, in corpus order, as ``data/{split}-XXXXX-of-YYYYY.parquet`` (one
shard per block and split) and renames the folder into place: metadata only, so its time does not grow
with the bytes written, and the result does not depend on how many processes wrote the blocks or how
often the build was interrupted. ``clearsep-data push dataset`` re-shards to the Hub's shard size.

A folder is only ever cleared when it holds a ClearSep build (its ``build.json`` or its work folder),
and then only of the files a build writes; one build at a time holds the folder's lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData

from clearsep_data.corpus import Clip, Skip
from clearsep_data.errors import ClearSepError
from clearsep_data.tracks import (
    ACCEPTED_SPLIT,
    DATA_DIR,
    REJECTED_SPLIT,
    SHARD_NAME,
    TrackCounts,
    count_tracks,
    shard_name,
    split_config,
)

BLOCK_PREFIX = "block-"
ROW_GROUP_SIZE = 64
MAX_ROW_GROUP_BYTES = 100_000_000
"""Largest row group (in memory), as ``push_to_hub`` writes them (``datasets.config.MAX_ROW_GROUP_SIZE``, 100MB): the
Hub's dataset viewer refuses row groups above about 300 MB."""


class BuildError(ClearSepError):
    """A build that cannot start or finish (bad options, a folder it must not touch, a busy or changed build)."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never a mix."""
    atomic_write_lines(path, [text])


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Stream ``lines`` into ``path`` atomically (a temporary file renamed into place)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    os.replace(temporary, path)


def source_stamp(item: Clip | Skip) -> str:
    """What a committed block remembers of each row, to notice a corpus changed under a resumed build.

    For audio files, size and modification time (reading them again would cost as much as the build);
    for embedded audio, a hash of the bytes; for a skip, its reason.
    """
    if isinstance(item, Skip):
        return f"skip:{item.clip_id}:{item.reason}"
    if isinstance(item.audio, bytes):
        audio = "bytes:" + hashlib.blake2b(item.audio, digest_size=8).hexdigest()
    else:
        try:
            status = os.stat(item.audio)
            audio = f"file:{status.st_size}:{status.st_mtime_ns}"
        except OSError:
            audio = "file:missing"
    return f"{item.clip_id}:{item.start_seconds}:{item.end_seconds}:{','.join(item.labels)}:{audio}"


@dataclass(frozen=True)
class Block:
    """A committed block: its folder and what it records about the clips it covers."""

    number: int
    path: Path

    def manifest(self) -> dict:
        """``{"indexes": [...], "sources": [...], "counts": {...}}`` (see :meth:`BuildFolder.commit_block`)."""
        return json.loads((self.path / "clips.json").read_text(encoding="utf-8"))

    def track_counts(self) -> TrackCounts:
        """The block's :class:`TrackCounts`: from its manifest, or (a block of an older build) from its files."""
        counts = self.manifest().get("tracks")
        if counts is not None:
            return TrackCounts.from_dict(counts)
        return count_tracks({split: [path] for split in (ACCEPTED_SPLIT, REJECTED_SPLIT) if (path := self.split_file(split))})

    def skips(self) -> Iterator[dict]:
        with open(self.path / "skips.jsonl", encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    def split_file(self, split: str) -> Path | None:
        path = self.path / f"{split}.parquet"
        return path if path.exists() else None


class BuildFolder:
    """One build's output folder. Every file name a build uses is defined here and nowhere else."""

    WORK_DIR = ".clearsep-build"
    PARAMS = "params.json"
    """In the work folder: the settings and numerics of the unfinished build (its marker)."""
    MANIFEST = "build.json"
    """At the root of a finished build: its settings and summary (its marker)."""
    SKIPS = "skips.jsonl"
    README = "README.md"
    DATA = DATA_DIR
    LOCK = ".clearsep-build.lock"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.work = self.root / self.WORK_DIR
        self._lock_handle = None

    # ------------------------------------------------------------------ lock

    def lock(self) -> None:
        """Take the folder's exclusive lock (released when the process ends, even by ``kill -9``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / self.LOCK
        while True:
            handle = open(path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise BuildError(f"{self.root} is being written by another build (PID {holder}); wait for it or stop it") from None
            try:  # the holder before us may have removed the file while we opened it: lock the file that is there
                same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle

    @property
    def lock_descriptor(self) -> int | None:
        """The file descriptor that holds the lock (``None`` when this process does not hold it)."""
        return None if self._lock_handle is None else self._lock_handle.fileno()

    def unlock(self) -> None:
        if self._lock_handle is not None:
            (self.root / self.LOCK).unlink(missing_ok=True)
            self._lock_handle.close()
            self._lock_handle = None

    # ------------------------------------------------------------------ state

    def finished_record(self) -> dict | None:
        """``build.json`` of a finished ClearSep build, or ``None``."""
        try:
            record = json.loads((self.root / self.MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and {"fingerprint", "summary"} <= set(record) else None

    def unfinished_record(self) -> dict | None:
        """``params.json`` of an unfinished build, or ``None``."""
        try:
            return json.loads((self.work / self.PARAMS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def holds_build(self) -> bool:
        return self.finished_record() is not None or self.unfinished_record() is not None

    def open(self, fingerprint: dict, numerics: dict, overwrite: bool) -> bool:
        """Validate or start the build (the lock must be held); ``False`` when the same build already finished.

        ``fingerprint`` holds the settings that define the dataset: a finished or unfinished build with
        other settings is refused. ``numerics`` (thread count, versions, ...) change results only in the
        last bits: an unfinished build resumes only under the same ones, so a resumed build is bit-identical
        to an uninterrupted one.
        """
        if overwrite:
            self.clear()
        finished = self.finished_record()
        if finished is not None:
            if finished["fingerprint"] != fingerprint:
                changed = _changed_keys(finished["fingerprint"], fingerprint)
                raise BuildError(f"{self.root} holds a finished build with other settings ({changed}); pass --overwrite to replace it")
            shutil.rmtree(self.work, ignore_errors=True)
            return False
        unfinished = self.unfinished_record()
        if unfinished is None and not overwrite and any(path.name != self.LOCK for path in self.root.iterdir()):
            raise BuildError(f"{self.root} is not empty and holds no ClearSep build; choose an empty or new folder")
        self.remove_stale_temporaries()
        if unfinished is None:
            self.work.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.work / self.PARAMS, json.dumps({"fingerprint": fingerprint, "numerics": numerics}, indent=2, sort_keys=True))
            return True
        if unfinished.get("fingerprint") != fingerprint:
            changed = _changed_keys(unfinished.get("fingerprint") or {}, fingerprint)
            raise BuildError(
                f"{self.root} holds an unfinished build with other settings ({changed}); "
                "rerun with the same settings to resume, or pass --overwrite"
            )
        if unfinished.get("numerics") != numerics:
            was, now = unfinished.get("numerics") or {}, numerics
            differences = ", ".join(f"{key} {was.get(key)} then, {now.get(key)} now" for key in sorted(set(was) | set(now)) if was.get(key) != now.get(key))
            raise BuildError(
                f"{self.root} holds an unfinished build made under other numerics ({differences}); resume under the same "
                "ones (e.g. OMP_NUM_THREADS for the threads per process) for a bit-identical result, or pass --overwrite"
            )
        return True

    def clear(self) -> None:
        """Remove what a ClearSep build wrote here, and nothing else; refuse a folder that holds no build."""
        if not self.root.exists():
            return
        if not self.holds_build():
            others = [path.name for path in self.root.iterdir() if path.name != self.LOCK]
            if others:
                raise BuildError(f"{self.root} holds no ClearSep build (it has {', '.join(sorted(others)[:5])}); --overwrite only replaces a build")
            return
        data = self.root / self.DATA
        if data.is_dir():
            for shard in data.iterdir():
                match = SHARD_NAME.match(shard.name)
                if shard.is_file() and match and match["index"]:  # {split}-XXXXX-of-YYYYY.parquet, as written
                    shard.unlink()
            if not any(data.iterdir()):
                data.rmdir()
        for name in (self.README, self.SKIPS, self.MANIFEST):
            (self.root / name).unlink(missing_ok=True)
        shutil.rmtree(self.work, ignore_errors=True)

    def remove_stale_temporaries(self) -> None:
        """Temporaries of a killed build (the lock is held, so none belongs to a live one)."""
        for path in self.root.glob(".*.tmp"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        shutil.rmtree(self.root / ".data.old", ignore_errors=True)
        if self.work.is_dir():
            for path in self.work.glob(".tmp-*"):
                shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ blocks

    def committed_blocks(self) -> dict[int, Block]:
        """Blocks already committed, by block number."""
        if not self.work.exists():
            return {}
        return {
            int(path.name[len(BLOCK_PREFIX) :]): Block(int(path.name[len(BLOCK_PREFIX) :]), path)
            for path in self.work.iterdir()
            if path.is_dir() and path.name.startswith(BLOCK_PREFIX)
        }

    def commit_block(
        self,
        number: int,
        rows_by_split: dict[str, list[dict]],
        skips: Sequence[Skip],
        manifest: dict,
        features: Features,
    ) -> Path:
        """Write one block's tracks, skips and manifest (clip indexes, source stamps, counts), then publish it atomically."""
        final = self.work / f"{BLOCK_PREFIX}{number:08d}"
        temporary = self.work / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        for split, rows in rows_by_split.items():
            if rows:
                with pq.ParquetWriter(temporary / f"{split}.parquet", features.arrow_schema) as writer:  # a final shard
                    for group in row_groups(pa.Table.from_pylist([row], schema=features.arrow_schema) for row in rows):
                        writer.write_table(group, row_group_size=group.num_rows)
        with open(temporary / "skips.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(skip.to_dict()) + "\n" for skip in skips)
        (temporary / "clips.json").write_text(json.dumps(manifest), encoding="utf-8")
        for path in temporary.iterdir():  # make the content durable before the rename publishes it
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.rename(temporary, final)
        return final

    # ------------------------------------------------------------------ finish

    def publish(self, blocks: Sequence[Block], splits: Sequence[str], features: Features) -> dict[str, dict[str, int]]:
        """Link the split files of ``blocks`` (in corpus order) as the shards under ``data/``; ``{split: {num_examples, num_bytes}}``."""
        return publish_blocks(blocks, self.root / self.DATA, splits, features)

    def write_skips(self, lines: Iterable[str]) -> None:
        atomic_write_lines(self.root / self.SKIPS, lines)

    def complete(self, card_data: DatasetCardData, readme_body: str, record: dict) -> None:
        """Write the README and ``build.json`` (the finished marker, last), then drop the work folder."""
        write_dataset_readme(self.root, card_data, readme_body)
        atomic_write_text(self.root / self.MANIFEST, json.dumps(record, indent=2, sort_keys=True))
        shutil.rmtree(self.work, ignore_errors=True)


def _changed_keys(old: dict, new: dict) -> str:
    """The settings that differ, ``key: old -> new`` (values shortened)."""
    def short(value) -> str:
        text = json.dumps(value, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."

    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    return "; ".join(f"{key}: {short(old.get(key))} -> {short(new.get(key))}" for key in keys)


def publish_blocks(blocks: Sequence[Block], data_dir: Path, splits: Sequence[str], features: Features) -> dict[str, dict[str, int]]:
    """Hard-link the split files of ``blocks`` (in corpus order) as the shards under ``data_dir``.

    Returns ``{split: {"num_examples": ..., "num_bytes": ...}}`` (from the parquet footers) of the splits that have
    rows. When none has, the first split gets one shard that holds only the schema, so the layout stays valid and
    the empty dataset streams (datasets cannot materialise a split of zero rows). The blocks stay whole until
    ``data_dir`` is complete (a build killed meanwhile resumes from them); the previous ``data_dir`` is replaced
    only then.
    """
    staging = data_dir.with_name(f".{data_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    info = {}
    for split in splits:
        sources = [path for block in blocks if (path := block.split_file(split))]
        if sources:
            info[split] = link_shards(sources, staging, split)
    if not info:
        info[splits[0]] = write_shards([], staging, splits[0], features, 0)
    old = data_dir.with_name(f".{data_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if data_dir.exists():
        os.rename(data_dir, old)
    os.rename(staging, data_dir)
    shutil.rmtree(old, ignore_errors=True)
    return info


def link_shards(sources: list[Path], staging: Path, split: str) -> dict[str, int]:
    """Hard-link ``sources`` (in order) as ``staging/{split}-XXXXX-of-YYYYY.parquet``; rows and bytes from their footers."""
    rows = total_bytes = 0
    for index, source in enumerate(sources):
        os.link(source, staging / shard_name(split, index, len(sources)))
        metadata = pq.read_metadata(source)
        rows += metadata.num_rows
        total_bytes += sum(metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups))
    return {"num_examples": rows, "num_bytes": total_bytes}


def row_groups(rows: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """One-row tables ``rows`` gathered into row groups of :data:`ROW_GROUP_SIZE` rows, fewer where they would hold
    more than :data:`MAX_ROW_GROUP_BYTES` (long tracks; a single larger row is a group of its own), so that the Hub's
    dataset viewer can read every row group. Lazily: a block of long tracks is never all in arrow at once."""
    group: list[pa.Table] = []
    size = 0
    for row in rows:
        if group and (len(group) == ROW_GROUP_SIZE or size + row.nbytes > MAX_ROW_GROUP_BYTES):
            yield pa.concat_tables(group)
            group, size = [], 0
        group.append(row)
        size += row.nbytes  # the bytes this row references, its audio included
    if group:
        yield pa.concat_tables(group)


def write_shards(sources: list[Path], staging: Path, split: str, features: Features, max_shard_bytes: int) -> dict[str, int]:
    """Stream ``sources`` (in order) into ``staging/{split}-XXXXX-of-YYYYY.parquet`` shards of about ``max_shard_bytes``.

    No sources give one empty shard with the schema.
    """
    shards: list[Path] = []
    writer: pq.ParquetWriter | None = None
    shard_bytes = rows = total_bytes = 0
    for source in sources:
        parquet = pq.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=ROW_GROUP_SIZE, use_threads=False):  # not whole row groups: any source shards finely
            table = pa.Table.from_batches([batch])
            if writer is None or shard_bytes >= max_shard_bytes:
                if writer is not None:
                    writer.close()
                shards.append(staging / f".{split}-{len(shards):05d}.parquet")
                writer = pq.ParquetWriter(shards[-1], features.arrow_schema)
                shard_bytes = 0
            for group in row_groups(table.slice(index, 1) for index in range(table.num_rows)):
                writer.write_table(group, row_group_size=group.num_rows)
            shard_bytes += table.nbytes
            total_bytes += table.nbytes
            rows += table.num_rows
        # Arrow's default allocator (mimalloc) keeps freed buffers (per reading thread, hence use_threads=False) and
        # its peak grew with the number of blocks merged (+75 MiB at 1,000 short clips): hand them back per source.
        pa.default_memory_pool().release_unused()
    if writer is None:  # no row groups at all: datasets reads a row group of 0 rows as a bad file
        shards.append(staging / f".{split}-00000.parquet")
        writer = pq.ParquetWriter(shards[-1], features.arrow_schema)
    writer.close()
    for index, shard in enumerate(shards):
        os.rename(shard, staging / shard_name(split, index, len(shards)))
    return {"num_examples": rows, "num_bytes": total_bytes}


def dataset_card_data(features: Features, split_info: dict[str, dict[str, int]], **metadata) -> DatasetCardData:
    """Card metadata (``configs`` and ``dataset_info``) that lets ``load_dataset`` read the shards, one config per
    :func:`~clearsep_data.tracks.split_config` (the accepted tracks are the ``default`` config).

    ``dataset_info`` is produced by datasets' own ``DatasetInfosDict``, as ``push_to_hub`` does.
    """
    by_config: dict[str, dict[str, dict[str, int]]] = {}
    for split, values in split_info.items():
        by_config.setdefault(split_config(split), {})[split] = values
    card_data = DatasetCardData(
        configs=[
            {"config_name": config, "data_files": [{"split": split, "path": f"{DATA_DIR}/{split}-*"} for split in splits]}
            for config, splits in by_config.items()
        ],
        **metadata,
    )
    infos = {}
    for config, config_splits in by_config.items():
        splits = SplitDict()
        for split, values in config_splits.items():
            splits.add(SplitInfo(name=split, num_bytes=values["num_bytes"], num_examples=values["num_examples"]))
        size = sum(values["num_bytes"] for values in config_splits.values())
        infos[config] = DatasetInfo(features=features, splits=splits, download_size=size, dataset_size=size)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data


def write_dataset_readme(output_dir: Path, card_data: DatasetCardData, body: str) -> None:
    """Write ``README.md`` (YAML front matter + ``body``) atomically: the text of ``DatasetCard`` with that data and
    body, without parsing and dumping its YAML again (most of a build's finishing time)."""
    atomic_write_text(output_dir / BuildFolder.README, f"---\n{card_data.to_yaml()}\n---\n\n{body}\n")
