"""The ClearSep data engine: natural clips in, a dataset of single-source tracks out.

For every clip of a corpus the engine reduces its labels to mutually exclusive queries, keeps a
single-event clip whole, separates a multi-event clip once per query, scores the separation
without references (remix and per-track checks, see :mod:`clearsep_data.quality`), filters the
tracks with :class:`~clearsep_data.filtering.Thresholds` and writes them, block by block, with
:mod:`clearsep_data.build_folder`. Launched under ``torchrun`` / ``accelerate launch``, each process takes
every ``num_processes``-th block and writes its tracks as final parquet shards; once all are done, the main
process publishes them as the dataset (hard links and a rename: no byte is rewritten).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, deque
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field

from clearsep_data.block_writer import block_writer, write_block
from clearsep_data.build_config import BuildConfig
from clearsep_data.build_folder import Block, BuildError, BuildFolder, dataset_card_data, source_stamp
from clearsep_data.clip_stream import ClipStream, CorpusEnd, clip_loader
from clearsep_data.corpus import Clip, Skip, open_corpus
from clearsep_data.distributed import distributed_state
from clearsep_data.track_maker import Made, Prepared, TrackMaker, load_model
from clearsep_data.tracks import (
    ACCEPTED_SPLIT,
    ORIGIN_SEPARATED,
    ORIGIN_SINGLE_SOURCE,
    REJECTED_SPLIT,
    TrackCounts,
    track_features,
)


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
    tracks_per_origin: dict[str, dict[str, int]] = field(default_factory=dict)
    """split -> origin -> tracks."""
    mean_re_sdr_accepted: float | None = None
    """Mean Re-SDR of the accepted separated tracks."""


def reason_category(reason: str) -> str:
    """A reason with its numbers blanked (MIDs such as ``/m/09x0r`` kept whole), to count skips by kind.

    A reason that starts with a file path is counted by the path's message, without the path.
    """
    text = reason.split(": ", 1)[-1] if reason.startswith("/") else reason
    return re.sub(r"(?<![\w/.])[-+]?\d+(\.\d+)?(?![\w/])", "#", text)


COUNTS = ("clips", "skipped", "accepted", "rejected", ORIGIN_SINGLE_SOURCE, ORIGIN_SEPARATED)
"""What a block records of its rows: clips, skipped clips, tracks by split, clips by origin."""
PROGRESS_FIELDS = ("accepted", "rejected", "skipped")


class BlockRunner:
    """Processes this process's blocks of the corpus, committing each one atomically.

    Blocks committed by an earlier run are not redone, but their rows are checked against the corpus as it is
    now (:func:`source_stamp`): a corpus changed under an unfinished build stops it instead of mixing both.
    """

    def __init__(self, corpus, maker: TrackMaker, folder: BuildFolder, features, *, rank: int, world: int, block_size: int,
                 keep_rejected: bool, num_workers: int = 0):
        self.corpus, self.maker, self.folder, self.features = corpus, maker, folder, features
        self.rank, self.world, self.block_size, self.keep_rejected = rank, world, block_size, keep_rejected
        self.num_workers = num_workers
        self._pending: dict | None = None
        """The block being filled."""
        self.done = folder.committed_blocks()
        self.counts: Counter = Counter()
        """This run's counts (:data:`COUNTS`) of the rows this process handled."""
        self.mine: set[int] = set()
        """Blocks this process handles in this run."""
        self._checking: tuple[int, list[str]] | None = None
        self._others_seen: dict[int, Counter] = {}

    def run(self, on_clip=None) -> int:
        """Process every pending block of this process; returns the number of corpus rows.

        Clips are decoded by ``num_workers`` DataLoader workers (:mod:`clearsep_data.clip_stream`) while this process
        runs the model. A finished block is FLAC-encoded and written by the block writer (a thread without workers, as
        many processes as workers with them) while the next ones are processed; at most as many blocks are in flight
        as there are writers, so memory stays bounded, and a writer's error surfaces at the next block. A batch of
        ``clips_per_batch`` rows for the model never straddles blocks: a resumed build makes the same batches.
        """
        stream = ClipStream(self.corpus, self.maker, rank=self.rank, world=self.world, block_size=self.block_size,
                            done=set(self.done))
        self._pending: dict | None = None
        in_flight: deque[Future] = deque()
        batch: list[Prepared] = []
        rows = 0
        # The decoding workers are forked before the writers start, so that they hold none of the writers' pipes.
        prepared_rows = iter(clip_loader(stream, self.num_workers, self.folder.lock_descriptor))
        with block_writer(self.num_workers) as writer:
            for prepared in prepared_rows:
                if isinstance(prepared, CorpusEnd):
                    rows = max(rows, prepared.rows)
                    continue
                block = prepared.item.index // self.block_size
                if block in self.done:
                    self._check_committed(prepared.item, block)
                    continue
                if batch and batch[0].item.index // self.block_size != block:
                    self._process(batch, writer, in_flight, on_clip)
                    batch = []
                batch.append(prepared)
                if len(batch) == self.maker.clips_per_batch:
                    self._process(batch, writer, in_flight, on_clip)
                    batch = []
            self._process(batch, writer, in_flight, on_clip)
            if self._pending is not None:
                self._commit_in_background(writer, self._pending, in_flight)
            while in_flight:
                in_flight.popleft().result()
        return rows

    def _check_committed(self, item: Clip | Skip, block: int) -> None:
        if self._checking is None or self._checking[0] != block:
            self._checking = (block, list(reversed(self.done[block].manifest()["sources"])))
        expected = self._checking[1].pop() if self._checking[1] else None
        if expected != source_stamp(item):
            raise BuildError(
                f"{item.where}: the corpus changed since block {block} of the unfinished build in {self.folder.root} was "
                "written (this row's labels, segment or audio file differ); pass --overwrite to rebuild from the corpus as it is now"
            )

    def _commit_in_background(self, writer: Executor, pending: dict, in_flight: deque[Future]) -> None:
        while len(in_flight) >= max(1, self.num_workers):  # one block per writer: bounded memory, errors surface here
            in_flight.popleft().result()
        splits = {ACCEPTED_SPLIT: pending[ACCEPTED_SPLIT], REJECTED_SPLIT: pending[REJECTED_SPLIT]}
        manifest = {"indexes": pending["indexes"], "sources": pending["sources"],
                    "counts": {key: pending["counts"][key] for key in COUNTS}}
        in_flight.append(writer.submit(write_block, self.folder.root, pending["block"], splits, pending["skips"], manifest,
                                       self.features, self.maker.sampling_rate))

    def _process(self, batch: list[Prepared], writer: Executor, in_flight: deque[Future], on_clip) -> None:
        """Make the tracks of a batch of rows (in corpus order) and add them to their blocks, committing each finished block.

        The rows' decoded audio is let go once made (the tracks hold what they need): an hour-long clip's waveform does
        not stay in memory while its block is written.
        """
        made_rows = self.maker.make(batch)
        for prepared in batch:
            prepared.mixture = None
        for prepared, made in zip(batch, made_rows):
            block = prepared.item.index // self.block_size
            if self._pending is not None and self._pending["block"] != block:
                self._commit_in_background(writer, self._pending, in_flight)
                self._pending = None
            if self._pending is None:
                self.mine.add(block)
                self._pending = {"block": block, ACCEPTED_SPLIT: [], REJECTED_SPLIT: [], "skips": [], "indexes": [],
                                 "sources": [], "counts": Counter()}
            self._add(prepared.item, made, self._pending)
            if on_clip is not None:
                on_clip(self)

    def _add(self, item: Clip | Skip, made: Made, pending: dict) -> None:
        pending["indexes"].append(item.index)
        pending["sources"].append(source_stamp(item))
        counts = Counter(clips=1)
        accepted, rejected, skip = made
        if skip is not None:
            pending["skips"].append(skip)
            counts["skipped"] += 1
        pending[ACCEPTED_SPLIT].extend(accepted)
        if self.keep_rejected:
            pending[REJECTED_SPLIT].extend(rejected)
        counts.update(accepted=len(accepted), rejected=len(rejected))
        if accepted or rejected:
            counts[(accepted or rejected)[0]["origin"]] += 1
        pending["counts"].update(counts)
        self.counts.update(counts)

    def others(self) -> Counter:
        """Counts of the blocks committed by other processes or earlier runs.

        One folder listing; a committed block never changes, so each manifest is read once, when it first appears.
        """
        for number, block in self.folder.committed_blocks().items():
            if number not in self.mine and number not in self._others_seen:
                self._others_seen[number] = Counter(block.manifest()["counts"])
        return sum(self._others_seen.values(), Counter())

    def committed_count(self) -> int:
        """Blocks committed so far by every process (as of the last :meth:`others`) and by this one."""
        return len(self._others_seen) + len(self.mine)


def finalize(config: BuildConfig, folder: BuildFolder, fingerprint: dict, rows: int, features) -> BuildSummary:
    """Check every block is there, publish their shards as the dataset, write skips, README and summary."""
    blocks = folder.committed_blocks()
    expected = range(math.ceil(rows / config.block_size))
    missing = sorted(set(expected) - set(blocks))
    if missing:
        raise BuildError(f"blocks {missing[:10]} were never committed; rerun the same command to finish them")
    ordered = [blocks[number] for number in expected]
    splits = [ACCEPTED_SPLIT, REJECTED_SPLIT] if config.keep_rejected else [ACCEPTED_SPLIT]
    split_info = folder.publish(ordered, splits, features)
    skip_reasons: Counter = Counter()

    def skip_lines():  # streamed: the skip list of a large corpus is never held in memory
        for block in ordered:
            for skip in block.skips():
                skip_reasons[reason_category(skip["reason"])] += 1
                yield json.dumps(skip) + "\n"

    folder.write_skips(skip_lines())
    summary = summarize(ordered, rows, fingerprint, skip_reasons)
    summary.splits = split_info
    card_data = dataset_card_data(
        features,
        split_info,
        task_categories=["audio-to-audio"],
        tags=["audio", "source-separation", "audioset", "clearsep"],
    )
    folder.complete(card_data, readme_body(summary), {"fingerprint": fingerprint, "summary": asdict(summary)})
    return summary


def summarize(blocks: list[Block], rows: int, fingerprint: dict, skip_reasons: Counter) -> BuildSummary:
    """Counts over the committed blocks, from their manifests."""
    clips: Counter = Counter()
    counts = TrackCounts()
    for block in blocks:
        clips.update(block.manifest()["counts"])
        counts.update(block.track_counts())
    return BuildSummary(
        clips=rows,
        single_source_clips=clips[ORIGIN_SINGLE_SOURCE],
        separated_clips=clips[ORIGIN_SEPARATED],
        accepted_tracks=counts.tracks(ACCEPTED_SPLIT),
        rejected_tracks=counts.tracks(REJECTED_SPLIT),
        skipped_clips=sum(skip_reasons.values()),
        skip_reasons=dict(skip_reasons.most_common()),
        accepted_per_class=counts.per_class_name(ACCEPTED_SPLIT),
        rejected_per_class=counts.per_class_name(REJECTED_SPLIT),
        model=fingerprint["model"],
        thresholds=fingerprint["thresholds"],
        iteration=fingerprint["iteration"],
        corpus=fingerprint["corpus"],
        sampling_rate=fingerprint["sampling_rate"],
        tracks_per_origin={split: dict(sorted(origins.items())) for split, origins in counts.origins.items() if origins},
        mean_re_sdr_accepted=counts.mean_separated_re_sdr(ACCEPTED_SPLIT),
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
    """A rich progress bar of the clips of every process, with clips/s, tracks and skipped clips."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(  # fits 80 columns: clips done/total, clips/s, tracks accepted and rejected, clips skipped
        TextColumn("[bold]build"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}/s"),
        TextColumn("acc {task.fields[accepted]} rej {task.fields[rejected]} skip {task.fields[skipped]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


def build(config: BuildConfig, *, overwrite: bool = False, progress: bool = True) -> BuildSummary:
    """Run the engine (this process's share under a distributed launch); every process returns the summary."""
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
    maker = TrackMaker(
        corpus.ontology,
        model,
        tag,
        thresholds=config.thresholds,
        iteration=config.iteration,
        sampling_rate=config.sampling_rate,
        batch_size=config.batch_size,
        use_bf16=config.use_bf16,
        clips_per_batch=config.clips_per_batch,
    )
    fingerprint = config.fingerprint(tag, maker.sampling_rate, corpus.content_digest())
    folder = BuildFolder(config.output_dir)
    if state.is_main_process:
        folder.lock()
    try:
        if _open_on_main(state, folder, fingerprint, config.numerics(state.device), overwrite):
            features = track_features(maker.sampling_rate)
            runner = BlockRunner(corpus, maker, folder, features, rank=state.process_index, world=state.num_processes,
                                 block_size=config.block_size, keep_rejected=config.keep_rejected, num_workers=config.num_workers)
            rows = _run_with_progress(runner, corpus, config.block_size, progress and state.is_main_process)
            state.wait_for_everyone()
            if state.is_main_process:
                finalize(config, folder, fingerprint, rows, features)
    finally:
        state.wait_for_everyone()
        folder.unlock()
    record = folder.finished_record()
    if record is None:
        raise BuildError(f"{config.output_dir}: the main process did not finish the build (see its error)")
    return BuildSummary(**record["summary"])


def _open_on_main(state, folder: BuildFolder, fingerprint: dict, numerics: dict, overwrite: bool) -> bool:
    """:meth:`BuildFolder.open` on the main process, its answer (or error) shared with every process."""
    answer: list = [None]
    if state.is_main_process:
        try:
            answer = [folder.open(fingerprint, numerics, overwrite)]
        except BuildError as error:
            answer = [str(error)]
    if state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(answer)
    if isinstance(answer[0], str):
        raise BuildError(answer[0])
    return answer[0]


def _run_with_progress(runner: BlockRunner, corpus, block_size: int, show: bool) -> int:
    """Run this process's share; the main process's bar counts every process's clips (committed blocks) once."""
    if not show:
        return runner.run()
    start = time.monotonic()
    others, polled = runner.others(), start
    with progress_bar() as bar:
        task = bar.add_task("build", total=corpus.num_rows, rate="0.00", accepted=0, rejected=0, skipped=0)

        def show() -> None:
            counts = others + runner.counts
            rate = runner.counts["clips"] / max(time.monotonic() - start, 1e-9)
            bar.update(task, completed=counts["clips"], rate=f"{rate:.2f}", **{key: counts[key] for key in PROGRESS_FIELDS})

        def on_clip(_: BlockRunner) -> None:
            nonlocal others, polled
            if time.monotonic() - polled > 1.0:
                others, polled = runner.others(), time.monotonic()
            show()

        rows = runner.run(on_clip)
        expected = math.ceil(rows / block_size)
        while True:  # the other processes' last blocks (this process's own are committed once run() returns)
            others = runner.others()
            show()
            if runner.committed_count() >= expected:
                return rows
            time.sleep(0.5)
