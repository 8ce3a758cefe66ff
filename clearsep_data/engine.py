"""The ClearSep data engine: natural clips in, a dataset of single-source tracks out.

For every clip of a corpus the engine reduces its labels to mutually exclusive queries, keeps a
single-event clip whole, separates a multi-event clip once per query, scores the separation
without references (remix and per-track checks, see :mod:`clearsep_data.quality`), filters the
tracks with :class:`~clearsep_data.filtering.Thresholds` and writes them, block by block, with
:mod:`clearsep_data.writer`. Launched under ``torchrun`` / ``accelerate launch``, each process takes
every ``num_processes``-th block; the main process merges the blocks once all are done.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

from clearsep_data.audio import AudioError, encode_flac
from clearsep_data.corpus import Clip, Skip, open_corpus
from clearsep_data.filtering import Thresholds
from clearsep_data.ontology import Ontology, mid_slug
from clearsep_data.quality import assess
from clearsep_data.schema import ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE, track_features
from clearsep_data.writer import (
    atomic_write_lines,
    atomic_write_text,
    commit_block,
    committed_blocks,
    dataset_card_data,
    iter_block_skips,
    merge_blocks,
    write_dataset_readme,
)

WORK_DIR_NAME = ".clearsep-build"
ACCEPTED_SPLIT = "train"
REJECTED_SPLIT = "rejected"


class BuildError(RuntimeError):
    """A build that cannot start or finish (bad options, a work folder from other settings)."""


@dataclass
class BuildConfig:
    """Everything that determines a build's output (and so must match when it resumes)."""

    corpus: str
    output_dir: Path
    model: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    iteration: int = 0
    segments: str | None = None
    ontology: str | None = None
    split: str = "train"
    labels_column: str = "labels"
    audio_column: str = "audio"
    streaming: bool = False
    sampling_rate: int = 16000
    """Rate of the tracks when no model is given (otherwise the model's rate)."""
    keep_rejected: bool = True
    block_size: int = 32
    max_shard_bytes: int = 500 * 2**20
    batch_size: int = 8
    use_bf16: bool = False

    def fingerprint(self, model_tag: str) -> dict:
        """The settings a resumed build must share with the interrupted one."""
        return {
            "corpus": self.corpus,
            "segments": self.segments,
            "ontology": self.ontology,
            "split": self.split,
            "labels_column": self.labels_column,
            "audio_column": self.audio_column,
            "model": model_tag,
            "thresholds": asdict(self.thresholds),
            "iteration": self.iteration,
            "sampling_rate": self.sampling_rate,
            "keep_rejected": self.keep_rejected,
            "block_size": self.block_size,
        }


@dataclass
class BuildSummary:
    """Counts of a finished build, also written to ``OUTPUT/build.json``."""

    clips: int = 0
    single_source_clips: int = 0
    separated_clips: int = 0
    accepted_tracks: int = 0
    rejected_tracks: int = 0
    skipped_clips: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    accepted_per_class: dict[str, int] = field(default_factory=dict)
    rejected_per_class: dict[str, int] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    model: str = ""
    thresholds: dict = field(default_factory=dict)
    iteration: int = 0
    corpus: str = ""
    sampling_rate: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


MODEL_FILES = ("config.json", "model.safetensors")
"""What a local model folder's content hash covers: the config (label order, STFT, architecture) and the weights."""


def model_tag(model_id: str, model) -> str:
    """``{id}@{revision}``: the Hub commit for Hub models, a content hash of config and weights for local folders."""
    revision = getattr(model.config, "_commit_hash", None)
    folder = Path(model_id)
    if folder.is_dir():
        digest = hashlib.sha256(b"".join(_file_sha256(folder / name) for name in MODEL_FILES))
        revision = "sha256:" + digest.hexdigest()[:16]
    return f"{model_id}@{revision or 'unknown'}"


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.digest()


def reason_category(reason: str) -> str:
    """A reason with numbers and quoted names blanked, to count skips by kind."""
    return re.sub(r"\d+(\.\d+)?", "#", reason.split(": ", 1)[0] if reason.startswith("/") else reason)


class TrackMaker:
    """Turns one clip into track rows (accepted and rejected) or a :class:`Skip`."""

    def __init__(self, config: BuildConfig, ontology: Ontology, model=None, model_tag: str = ""):
        self.config = config
        self.ontology = ontology
        self.model = model
        self.model_tag = model_tag
        self.vocabulary = list(model.config.label_mids) if model is not None else None
        self.sampling_rate = model.config.sampling_rate if model is not None else config.sampling_rate
        self.thresholds_json = config.thresholds.to_json()

    def __call__(self, clip: Clip, corpus) -> tuple[list[dict], list[dict], Skip | None]:
        """``(accepted_rows, rejected_rows, skip)`` for one clip."""
        selection = self.ontology.select_queries(clip.labels, self.vocabulary)
        if selection.unknown:
            return [], [], self._skip(clip, f"labels not in the ontology: {', '.join(selection.unknown)}")
        if selection.out_of_vocabulary:
            names = ", ".join(f"{mid} ({self.ontology.name(mid)})" for mid in selection.out_of_vocabulary)
            return [], [], self._skip(clip, f"labels outside the model's query vocabulary: {names}")
        if not selection.queries:
            return [], [], self._skip(clip, "no labels to query")
        if len(selection.queries) > 1 and self.model is None:
            return [], [], self._skip(clip, "multi-event clip and no separation model given")
        try:
            mixture = corpus.load(clip, self.sampling_rate)
        except AudioError as error:
            return [], [], self._skip(clip, error.reason)
        if len(selection.queries) == 1:
            return [self._row(clip, selection.queries[0], mixture, origin=ORIGIN_SINGLE_SOURCE)], [], None
        return self._separate(clip, list(selection.queries), mixture)

    def _separate(self, clip: Clip, queries: list[str], mixture: np.ndarray):
        separate = dict(sampling_rate=self.sampling_rate, batch_size=self.config.batch_size, use_bf16=self.config.use_bf16)
        tracks = self.model.separate(mixture, queries, **separate)
        bad = [query for query, track in zip(queries, tracks) if not np.isfinite(track).all()]
        if bad:
            return [], [], self._skip(clip, f"model output is not finite (NaN/inf) for {', '.join(bad)}")
        reseparated = np.stack(self.model.separate(list(tracks), [queries] * len(queries), **separate))
        quality = assess(torch.from_numpy(mixture), torch.from_numpy(tracks), torch.from_numpy(reseparated))
        if not (math.isfinite(quality.re_sdr) and math.isfinite(quality.re_sisdr)):
            return [], [], self._skip(clip, "remix scores are not finite")
        accepted, rejected = [], []
        quietest = float(quality.energy_ratio.min())
        for index, query in enumerate(queries):
            scores = dict(
                re_sdr=quality.re_sdr,
                re_sisdr=quality.re_sisdr,
                energy_ratio=float(quality.energy_ratio[index]),
                consistency_sisdr=float(quality.consistency_sisdr[index]),
                leakage_db=float(quality.leakage_db[index]),
            )
            reason = self.config.thresholds.reject_reason(**scores, quietest_in_clip=quietest)
            row = self._row(clip, query, tracks[index], origin=ORIGIN_SEPARATED, reject_reason=reason, **scores)
            (rejected if reason else accepted).append(row)
        return accepted, rejected, None

    def _row(self, clip: Clip, label: str, waveform: np.ndarray, origin: str, reject_reason: str = "", **scores) -> dict:
        track_id = f"{clip.clip_id}_{int(round(clip.start_seconds * 1000))}_{mid_slug(label)}"
        return {
            "audio": {"bytes": encode_flac(waveform, self.sampling_rate), "path": f"{track_id}.flac"},
            "track_id": track_id,
            "clip_id": clip.clip_id,
            "start_seconds": clip.start_seconds,
            "end_seconds": clip.end_seconds,
            "label": label,
            "label_name": self.ontology.name(label),
            "clip_labels": list(clip.labels),
            "origin": origin,
            "re_sdr": scores.get("re_sdr"),
            "re_sisdr": scores.get("re_sisdr"),
            "energy_ratio": scores.get("energy_ratio", 0.0),
            "consistency_sisdr": scores.get("consistency_sisdr"),
            "leakage_db": scores.get("leakage_db"),
            "iteration": self.config.iteration,
            "model": self.model_tag if origin == ORIGIN_SEPARATED else "",
            "thresholds": self.thresholds_json,
            "reject_reason": reject_reason,
        }

    @staticmethod
    def _skip(clip: Clip, reason: str) -> Skip:
        return Skip(index=clip.index, clip_id=clip.clip_id, where=clip.where, reason=reason)


def distributed_state():
    """accelerate's process state; on CPU it must be told so, or every process would do all the work."""
    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs

    # Processes finish their shares at different times: allow long waits at the final barrier.
    kwargs = InitProcessGroupKwargs(timeout=timedelta(hours=12)).to_kwargs()
    return PartialState(cpu=not torch.cuda.is_available(), **kwargs)


def load_model(model_id: str | None, device):
    """A ``ClearSepModel`` (local folder or Hub id) in eval mode on ``device``, and its provenance tag.

    ``from_pretrained`` returns weights in memory of their own (not the memory-mapped file), so the model computes
    the same whether ``.to(device)`` copies it (an accelerator) or not (the CPU). A folder that cannot be loaded
    raises ``ClearSepLoadError`` (a ``ValueError``) naming the file and the fault.
    """
    if model_id is None:
        return None, ""
    from clearsep_data.modeling import ClearSepModel

    model = ClearSepModel.from_pretrained(model_id).to(device).eval()
    return model, model_tag(model_id, model)


class BlockRunner:
    """Processes this process's blocks of the corpus, committing each one atomically."""

    def __init__(self, corpus, maker: TrackMaker, work_dir: Path, features, rank: int, world: int, block_size: int):
        self.corpus, self.maker, self.work_dir, self.features = corpus, maker, work_dir, features
        self.rank, self.world, self.block_size = rank, world, block_size
        self.accepted = self.rejected = 0

    def run(self, on_clip=None) -> int:
        """Process every pending block of this process; returns the number of corpus rows seen.

        A finished block is written by a background thread while the next one is processed (parquet writing and
        fsync release the GIL, so the writes overlap the model); at most one block is in flight.
        """
        done = committed_blocks(self.work_dir)
        pending: dict | None = None
        in_flight: Future | None = None
        rows = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clearsep-commit") as writer:
            for item in self.corpus:
                rows = item.index + 1
                block = item.index // self.block_size
                if block % self.world != self.rank or block in done:
                    continue
                if pending is not None and pending["block"] != block:
                    in_flight = self._commit_in_background(writer, pending, in_flight)
                    pending = None
                if pending is None:
                    pending = {"block": block, "train": [], REJECTED_SPLIT: [], "skips": [], "clips": []}
                self._process(item, pending)
                if on_clip is not None:
                    on_clip(self)
            if pending is not None:
                in_flight = self._commit_in_background(writer, pending, in_flight)
            if in_flight is not None:
                in_flight.result()
        return rows

    def _commit_in_background(self, writer: ThreadPoolExecutor, pending: dict, in_flight: Future | None) -> Future:
        if in_flight is not None:
            in_flight.result()  # the previous block first: bounded memory, and its errors surface here
        return writer.submit(self._commit, pending)

    def _process(self, item: Clip | Skip, pending: dict) -> None:
        pending["clips"].append(item.index)
        if isinstance(item, Skip):
            pending["skips"].append(item)
            return
        accepted, rejected, skip = self.maker(item, self.corpus)
        if skip is not None:
            pending["skips"].append(skip)
        pending[ACCEPTED_SPLIT].extend(accepted)
        if self.maker.config.keep_rejected:
            pending[REJECTED_SPLIT].extend(rejected)
        self.accepted += len(accepted)
        self.rejected += len(rejected)

    def _commit(self, pending: dict) -> None:
        splits = {ACCEPTED_SPLIT: pending[ACCEPTED_SPLIT], REJECTED_SPLIT: pending[REJECTED_SPLIT]}
        commit_block(self.work_dir, pending["block"], splits, pending["skips"], pending["clips"], self.features)


def prepare_work_dir(output_dir: Path, fingerprint: dict, overwrite: bool) -> bool:
    """Create or validate the work folder; ``False`` when the same build already finished."""
    work = output_dir / WORK_DIR_NAME
    finished = output_dir / "build.json"
    if overwrite:
        shutil.rmtree(work, ignore_errors=True)
        for stale in ("data", "README.md", "build.json", "skips.jsonl"):
            path = output_dir / stale
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    elif finished.exists():
        if json.loads(finished.read_text()).get("fingerprint") == fingerprint:
            shutil.rmtree(work, ignore_errors=True)
            return False
        raise BuildError(f"{output_dir} holds a finished build with other settings; pass --overwrite to replace it")
    elif output_dir.exists() and any(output_dir.iterdir()) and not (work / "params.json").exists():
        raise BuildError(f"{output_dir} is not empty and holds no ClearSep build; choose another folder or pass --overwrite")
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.json"
    if params.exists():
        if json.loads(params.read_text()) != fingerprint:
            raise BuildError(
                f"{output_dir} holds an unfinished build with other settings ({params}); "
                "rerun with the same settings to resume, or pass --overwrite"
            )
    else:
        atomic_write_text(params, json.dumps(fingerprint, indent=2, sort_keys=True))
    return True


def finalize(config: BuildConfig, fingerprint: dict, rows: int, features, sampling_rate: int) -> BuildSummary:
    """Check every block is there, merge them into the dataset, write README, skips and summary."""
    work = config.output_dir / WORK_DIR_NAME
    blocks = committed_blocks(work)
    expected = range(math.ceil(rows / config.block_size))
    missing = sorted(set(expected) - set(blocks))
    if missing:
        raise BuildError(f"blocks {missing[:10]} were never committed; rerun the same command to finish them")
    ordered = [blocks[number] for number in expected]
    splits = [ACCEPTED_SPLIT, REJECTED_SPLIT] if config.keep_rejected else [ACCEPTED_SPLIT]
    split_info = merge_blocks(ordered, config.output_dir, splits, features, config.max_shard_bytes)
    skip_reasons: Counter = Counter()

    def skip_lines():  # streamed: the skip list of a large corpus is never held in memory
        for skip in iter_block_skips(ordered):
            skip_reasons[reason_category(skip["reason"])] += 1
            yield json.dumps(skip) + "\n"

    atomic_write_lines(config.output_dir / "skips.jsonl", skip_lines())
    summary = summarize(ordered, rows, fingerprint, sampling_rate, skip_reasons)
    summary.splits = split_info
    card_data = dataset_card_data(
        features,
        split_info,
        task_categories=["audio-to-audio"],
        tags=["audio", "source-separation", "audioset", "clearsep"],
    )
    write_dataset_readme(config.output_dir, card_data, readme_body(summary))
    atomic_write_text(
        config.output_dir / "build.json",
        json.dumps({"fingerprint": fingerprint, "summary": json.loads(summary.to_json())}, indent=2, sort_keys=True),
    )
    shutil.rmtree(work, ignore_errors=True)
    return summary


def summarize(blocks: list[Path], rows: int, fingerprint: dict, sampling_rate: int, skip_reasons: Counter) -> BuildSummary:
    """Counts over the committed blocks, reading only the label and origin columns, one block at a time."""
    import pyarrow.parquet as pq

    accepted: Counter = Counter()
    rejected: Counter = Counter()
    clips_by_origin: Counter = Counter()
    for block in blocks:
        origins: dict[str, set] = {ORIGIN_SINGLE_SOURCE: set(), ORIGIN_SEPARATED: set()}  # a clip lies in one block
        for split, counter in ((ACCEPTED_SPLIT, accepted), (REJECTED_SPLIT, rejected)):
            path = block / f"{split}.parquet"
            if path.exists():
                table = pq.read_table(path, columns=["clip_id", "start_seconds", "label_name", "origin"]).to_pylist()
                counter.update(row["label_name"] for row in table)
                for row in table:
                    origins[row["origin"]].add((row["clip_id"], row["start_seconds"]))
        clips_by_origin.update({origin: len(clips) for origin, clips in origins.items()})
    return BuildSummary(
        clips=rows,
        single_source_clips=clips_by_origin[ORIGIN_SINGLE_SOURCE],
        separated_clips=clips_by_origin[ORIGIN_SEPARATED],
        accepted_tracks=sum(accepted.values()),
        rejected_tracks=sum(rejected.values()),
        skipped_clips=sum(skip_reasons.values()),
        skip_reasons=dict(skip_reasons.most_common()),
        accepted_per_class=dict(sorted(accepted.items())),
        rejected_per_class=dict(sorted(rejected.items())),
        model=fingerprint["model"],
        thresholds=fingerprint["thresholds"],
        iteration=fingerprint["iteration"],
        corpus=fingerprint["corpus"],
        sampling_rate=sampling_rate,
    )


def readme_body(summary: BuildSummary) -> str:
    """A short card body; ``clearsep-data push dataset`` writes the full dataset card."""
    lines = [
        "# ClearSep single-source tracks",
        "",
        f"Built by `clearsep-data build` from `{summary.corpus}` (iteration {summary.iteration}, "
        f"model `{summary.model or 'none'}`).",
        "",
        f"- clips: {summary.clips} ({summary.single_source_clips} single-source, {summary.separated_clips} separated, "
        f"{summary.skipped_clips} skipped; see `skips.jsonl`)",
        f"- tracks: {summary.accepted_tracks} accepted (split `train`), {summary.rejected_tracks} rejected",
        f"- thresholds: `{json.dumps(summary.thresholds, sort_keys=True)}`",
        "",
        "```python",
        "from datasets import load_dataset",
        'tracks = load_dataset("path/to/this/folder", split="train")',
        "```",
    ]
    return "\n".join(lines)


def progress_bar():
    """A rich progress bar showing clips/s and the acceptance rate."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]build"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} clips/s"),
        TextColumn("accepted {task.fields[accept]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def build(config: BuildConfig, *, overwrite: bool = False, progress: bool = True) -> BuildSummary | None:
    """Run the engine (this process's share under a distributed launch); the main process returns the summary."""
    state = distributed_state()
    model, tag = load_model(config.model, state.device)
    corpus = open_corpus(
        config.corpus,
        segments=config.segments,
        ontology=config.ontology,
        split=config.split,
        labels_column=config.labels_column,
        audio_column=config.audio_column,
        streaming=config.streaming,
    )
    maker = TrackMaker(config, corpus.ontology, model, tag)
    sampling_rate = maker.sampling_rate
    config.sampling_rate = sampling_rate
    fingerprint = config.fingerprint(tag)
    pending = prepare_work_dir(config.output_dir, fingerprint, overwrite) if state.is_main_process else True
    state.wait_for_everyone()
    if state.is_main_process and not pending:
        return BuildSummary(**json.loads((config.output_dir / "build.json").read_text())["summary"])
    if not (config.output_dir / WORK_DIR_NAME).exists():
        return None  # another process found the build already finished
    features = track_features(sampling_rate)
    runner = BlockRunner(corpus, maker, config.output_dir / WORK_DIR_NAME, features, state.process_index, state.num_processes, config.block_size)
    rows = _run_with_progress(runner, corpus, progress and state.is_main_process, state.num_processes)
    state.wait_for_everyone()
    summary = finalize(config, fingerprint, rows, features, sampling_rate) if state.is_main_process else None
    state.wait_for_everyone()
    return summary


def _run_with_progress(runner: BlockRunner, corpus, show: bool, world: int) -> int:
    if not show:
        return runner.run()
    total = None if corpus.num_rows is None else math.ceil(corpus.num_rows / world)
    start = time.monotonic()
    with progress_bar() as bar:
        task = bar.add_task("build", total=total, rate="0.0", accept="-")

        def on_clip(current: BlockRunner) -> None:
            tracks = current.accepted + current.rejected
            done = bar.tasks[0].completed + 1
            bar.update(
                task,
                advance=1,
                rate=f"{done / max(time.monotonic() - start, 1e-9):.2f}",
                accept=f"{current.accepted / tracks:.0%}" if tracks else "-",
            )

        return runner.run(on_clip)
