"""Speed and memory of the data engine (``clearsep-data build``) against its targets. Prints one JSON object.

Measured on demo corpora generated into a temporary folder and an untrained ``small`` model over the demo vocabulary
(the cost does not depend on the weights):

- ``overhead_ratio``: in-process ``build`` time / the bare ``model.separate`` calls the build makes on the same clips
  and queries (the primary separation of each multi-event clip AND the re-separation of its tracks with every query
  of the clip, one clip per call), in the same run; the fastest of ``--repeats`` interleaved runs of each. Target
  <= 1.15. The build runs ``--clips-per-batch`` clips per call. ``--overhead`` measures only this.
- ``kth_query_ratio``: marginal cost of the k-th query of one ``separate`` call / the cost of the first, k = 2..4
  (``benchmarks/multi_query.py``'s measurement; the worst k, from the fastest of the repeats). Target <= 0.5.
- ``scaleout_speedup``: ``build`` time of 1 process with 2 OpenMP threads / of ``torchrun --nproc_per_node 2`` with 1
  thread each, timed inside the processes from a barrier after start-up (the wall time with start-up is reported too);
  the outputs are checked equal (up to float rounding between thread counts). Target >= 1.5.
- ``rss_growth``: peak RSS (``VmHWM``) of a ``build`` child process on the large / the small corpus (``--rss-clips``).
  Target <= 1.10.
- ``null_model``: the engine's own throughput, the separator replaced by :class:`NullSeparator` (instant, the same
  output shapes): clips/s and milliseconds per clip in each stage (decode, separate, quality, encode, write, finalize),
  with 0 and with ``--workers`` DataLoader workers (stages are timed in this process: only the 0-worker run has them
  all). What is left when the model costs nothing is the ceiling the CPU side puts on a build.
  ``null_worker_speedup``: clips/s with 2 workers / with 0 (target >= 1.7 with two free cores).
  ``finalize_vs_merge``: in the 0-worker run, the former finalize (the same, with the final merge, ``write_shards``
  re-writing every block into 500 MB shards, timed on the same blocks just before, in place of the hard links) / the
  finalize (target >= 10).
  ``--null-model`` measures only this (much faster than the full report).
- ``long_clip``: with ``--long-clip-minutes 0.0667,10,60`` (only this is measured), a build of one clip of each
  length (a 10 s, 3-event demo clip repeated) in a child process: its peak RSS (``VmHWM``), build time and tracks.
  Target: a 60-minute clip builds within 1.5 GB (``long_clip_peak_gib``).

In-process measurements use one torch thread (``--threads``): on a shared machine OpenMP threads spin-wait for
each other whenever one is descheduled, which inflates and scatters the model's time; one thread gives the model's
least disturbed (smallest) time and so the strictest overhead ratio.

Also clips/s, the real-time factor (processing seconds per second of audio, lower is better), where the build's time
goes (model, decoding, FLAC encoding, quality scores, block writes, finalize) and the model's FLOPs per 10 s clip.

    python benchmarks/engine.py [--quick] [--clips N] [--seconds S] [--repeats R]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from _common import (
    PYTHON,
    child_env,
    demo_corpus,
    demo_model,
    finish,
    machine,
    mib,
    phase,
    peak_rss_bytes,
    run_child,
    run_children,
    save_demo_model,
    stdout_to_stderr,
    torchrun,
)
from multi_query import query_costs

TARGETS = {"long_clip_peak_gib": ("<=", 1.5), "null_worker_speedup": (">=", 1.7), "finalize_vs_merge": (">=", 10.0), "overhead_ratio": ("<=", 1.15), "kth_query_ratio": ("<=", 0.5), "scaleout_speedup": (">=", 1.5), "rss_growth": ("<=", 1.10)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small corpora and short clips: under a minute")
    parser.add_argument("--clips", type=int, help="clips of the overhead / scale-out corpus (default 64; quick 8)")
    parser.add_argument("--seconds", type=float, help="clip length (default 10; quick 1)")
    parser.add_argument("--repeats", type=int, help="interleaved runs of build and of the bare calls (default 3; quick 1)")
    parser.add_argument("--rss-clips", help="small,large clip counts of the RSS comparison (default 100,1000; quick 20,200)")
    parser.add_argument("--rss-seconds", type=float, help="clip length of the RSS corpora (default 2; quick 1)")
    parser.add_argument("--block-size", type=int, help="clips per committed block (default 8; quick 2): several blocks per process")
    parser.add_argument("--batch-size", type=int, default=8, help="the engine's separate batch size")
    parser.add_argument("--clips-per-batch", type=int, default=1, help="the engine's clips per separate call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process measurements (see above)")
    parser.add_argument("--null-model", action="store_true", help="only the null-model measurement (see above)")
    parser.add_argument("--overhead", action="store_true", help="only the overhead_ratio measurement")
    parser.add_argument("--null-clips", type=int, help="clips of the null-model corpus (default 256; quick 16)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the null-model comparison")
    parser.add_argument("--long-clip-minutes", help="only the long-clip builds: clip lengths in minutes (e.g. 0.0667,10,60)")
    parser.add_argument("--worker", nargs=3, metavar=("CORPUS", "OUTPUT", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    args.clips = args.clips or (8 if quick else 64)
    args.null_clips = args.null_clips or (16 if quick else 256)
    args.block_size = args.block_size or (2 if quick else 8)
    args.seconds = args.seconds or (1.0 if quick else 10.0)
    args.repeats = args.repeats or (1 if quick else 3)
    args.rss_clips = [int(n) for n in (args.rss_clips or ("20,200" if quick else "100,1000")).split(",")]
    args.rss_seconds = args.rss_seconds or (1.0 if quick else 2.0)
    args.long_clip_minutes = [float(x) for x in args.long_clip_minutes.split(",")] if args.long_clip_minutes else []
    return args


def build_config(corpus: Path, output: Path, model: Path, args: argparse.Namespace, **overrides):
    from clearsep_data.engine import BuildConfig

    settings = dict(block_size=args.block_size, batch_size=args.batch_size, clips_per_batch=args.clips_per_batch, **overrides)
    return BuildConfig(corpus=str(corpus), output_dir=output, model=str(model), **settings)


def worker(args: argparse.Namespace) -> None:
    """One build, as ``clearsep-data build`` runs it (under torchrun: this process's share).

    Timed from a barrier once every process has started and imported, so interpreter start-up is left out; the main
    process prints the time and its own peak RSS.
    """
    from clearsep_data.distributed import distributed_state
    from clearsep_data.engine import build

    corpus, output, model = (Path(value) for value in args.worker)
    state = distributed_state()
    state.wait_for_everyone()
    start = time.perf_counter()
    with stdout_to_stderr():
        summary = build(build_config(corpus, output, model, args), overwrite=True, progress=False)
    if summary is not None:
        result = {"build_seconds": time.perf_counter() - start, "clips": summary.clips, "peak_rss_bytes": peak_rss_bytes()}
        print(json.dumps(result))


# ------------------------------------------------------------------------------------------ in-process build
class StageTimer:
    """Wall seconds spent in the engine's stages during a ``build`` call, by patching the functions it calls.

    Block writes run in the engine's background writer thread, overlapping the model: the stages can add up to more
    than the build's wall time (``build_other_seconds`` then comes out negative).
    """

    STAGES = {
        "decode": ("clearsep_data.corpus", "Corpus", "load"),
        "encode": ("clearsep_data.block_writer", None, "encode_audio"),
        "quality": ("clearsep_data.quality", "QualitySums", "add"),
        "write": ("clearsep_data.build_folder", "BuildFolder", "commit_block"),
        "finalize": ("clearsep_data.engine", None, "finalize"),
        "model_load": ("clearsep_data.engine", None, "load_model"),
    }

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def _timed(self, function, stage):
        def timed(*args, **kwargs):
            if stage == "model_separate":  # the engine re-separates tracks it holds as tensors, separates numpy clips
                name = "model_reseparate" if torch.is_tensor(args[1][0]) else "model_separate"
            else:
                name = stage
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        return timed

    @contextlib.contextmanager
    def patched(self, separator=None):
        """Time the stages, and the ``separate`` method of ``separator`` (default ``ClearSepModel``)."""
        import importlib

        from clearsep_data.modeling import ClearSepModel

        targets = [(importlib.import_module(module), cls, name, stage) for stage, (module, cls, name) in self.STAGES.items()]
        targets = [(getattr(module, cls) if cls else module, name, stage) for module, cls, name, stage in targets]
        targets.append((separator or ClearSepModel, "separate", "model_separate"))
        originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
        try:
            for owner, name, stage in targets:
                setattr(owner, name, self._timed(getattr(owner, name), stage))
            yield self
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


def multi_event_work(corpus_dir: Path, rate: int, vocabulary: list[str]) -> list[tuple[np.ndarray, list[str]]]:
    """The decoded mixture and queries of every clip the engine separates (more than one exclusive query)."""
    from clearsep_data.corpus import Clip, open_corpus

    corpus = open_corpus(str(corpus_dir))
    work = []
    for item in corpus:
        if isinstance(item, Clip):
            queries = list(corpus.ontology.select_queries(item.labels, vocabulary).queries)
            if len(queries) > 1:
                work.append((corpus.load(item, rate), queries))
    return work


def bare_calls(model, work, batch_size: int) -> dict[str, float | dict]:
    """The model calls of a build, and nothing else: separate each clip, then re-separate its tracks."""
    options = dict(batch_size=batch_size)
    primary = reseparate = 0.0
    by_queries: dict[int, list[float]] = defaultdict(list)
    for mixture, queries in work:
        start = time.perf_counter()
        tracks = model.separate(mixture, queries, **options)
        middle = time.perf_counter()
        model.separate(list(tracks), [queries] * len(queries), **options)
        end = time.perf_counter()
        primary += middle - start
        reseparate += end - middle
        by_queries[len(queries)].append(end - start)
    return {"primary": primary, "reseparate": reseparate, "total": primary + reseparate, "by_queries": by_queries}


def measure_overhead(corpus_dir: Path, model_dir: Path, args, root: Path) -> dict:
    from clearsep_data.engine import build
    from clearsep_data.modeling import ClearSepModel

    model = ClearSepModel.from_pretrained(model_dir).eval()
    work = multi_event_work(corpus_dir, model.config.sampling_rate, model.config.label_mids)
    for mixture, queries in work[:2]:  # warm-up: kernels and allocator for the shapes of both calls
        model.separate(list(model.separate(mixture, queries)), [queries] * len(queries))
    bare_runs, build_runs = [], []
    for repeat in range(args.repeats):  # interleaved: load changes on a shared machine hit both alike
        bare_runs.append(bare_calls(model, work, args.batch_size))
        timer = StageTimer()
        config = build_config(corpus_dir, root / f"build-{repeat}", model_dir, args)
        with timer.patched(), stdout_to_stderr():
            start = time.perf_counter()
            summary = build(config, overwrite=True, progress=False)
            elapsed = time.perf_counter() - start
        build_runs.append({"seconds": elapsed, "stages": dict(timer.seconds), "summary": summary})
    bare = min(bare_runs, key=lambda run: run["total"])
    fastest = min(build_runs, key=lambda run: run["seconds"])
    summary, stages = fastest["summary"], fastest["stages"]
    model_in_build = stages.get("model_separate", 0.0) + stages.get("model_reseparate", 0.0)
    audio_seconds = summary.clips * args.seconds
    by_queries = {str(k): round(min(statistics.mean(run["by_queries"][k]) for run in bare_runs), 4) for k in sorted(bare["by_queries"])}
    return {
        "overhead_ratio": round(fastest["seconds"] / bare["total"], 3),
        "build_seconds": round(fastest["seconds"], 3),
        "build_seconds_all_runs": [round(run["seconds"], 3) for run in build_runs],
        "bare_model_seconds": {
            "primary_separations": round(bare["primary"], 3),
            "reseparations": round(bare["reseparate"], 3),
            "total": round(bare["total"], 3),
            "all_runs_total": [round(run["total"], 3) for run in bare_runs],
        },
        "build_stage_seconds": {name: round(value, 3) for name, value in sorted(stages.items())},
        "build_other_seconds": round(fastest["seconds"] - sum(stages.values()), 3),
        "overhead_ratio_within_build": round(fastest["seconds"] / model_in_build, 3) if model_in_build else None,
        "model_seconds_per_separated_clip_by_queries": by_queries,
        "clips": summary.clips,
        "separated_clips": summary.separated_clips,
        "single_source_clips": summary.single_source_clips,
        "tracks": summary.accepted_tracks + summary.rejected_tracks,
        "clips_per_second": round(summary.clips / fastest["seconds"], 3),
        "real_time_factor": round(fastest["seconds"] / audio_seconds, 4),
        "separated_clips_per_second": round(summary.separated_clips / fastest["seconds"], 3),
    }


# ------------------------------------------------------------------------------------------ null model
class NullSeparator:
    """Stands in for ``ClearSepModel`` in a build: ``separate`` returns at once, with the model's output shapes.

    Each query's track is the mixture divided by the number of queries (so the remix is exact and every quality
    score finite); a list of waveforms gets a list of ``(Q, T)`` arrays (tensors with ``return_tensors="pt"``), as
    from the model.
    """

    def __init__(self, config, feature_extractor):
        self.config, self.feature_extractor = config, feature_extractor

    def separate(self, audio, queries, sampling_rate=None, return_tensors="np", **options):
        single = not isinstance(audio, (list, tuple))
        waveforms, query_lists = ([audio], [queries]) if single else (list(audio), list(queries))
        outputs = [torch.as_tensor(wave, dtype=torch.float32)[None].repeat(len(names), 1) / len(names)
                   for wave, names in zip(waveforms, query_lists)]
        outputs = outputs if return_tensors == "pt" else [output.numpy() for output in outputs]
        return outputs[0] if single else outputs


@contextlib.contextmanager
def null_model():
    """Builds in this block load a :class:`NullSeparator` in place of the model (the config and tag are the model's)."""
    from clearsep_data import engine

    load_model = engine.load_model

    def load_null(model_id, device):
        model, tag = load_model(model_id, device)
        return NullSeparator(model.config, model.feature_extractor), tag

    engine.load_model = load_null
    try:
        yield
    finally:
        engine.load_model = load_model


NULL_STAGES = ("decode", "separate", "quality", "encode", "write", "finalize")


@contextlib.contextmanager
def former_merge(seconds: dict):
    """Before each finalize publishes the blocks, time the merge it replaced on the same blocks (into a scratch folder)."""
    from clearsep_data import build_folder

    publish = build_folder.publish_blocks

    def merge_then_publish(blocks, data_dir, splits, features):
        scratch = data_dir.with_name(".former-merge")
        start = time.perf_counter()
        for split in splits:
            sources = [path for block in blocks if (path := block.split_file(split))]
            if sources:
                scratch.mkdir(exist_ok=True)
                build_folder.write_shards(sources, scratch, split, features, 500 * 2**20)
        seconds["former_merge"] = time.perf_counter() - start
        shutil.rmtree(scratch, ignore_errors=True)
        start = time.perf_counter()
        try:
            return publish(blocks, data_dir, splits, features)
        finally:
            seconds["publish"] = time.perf_counter() - start

    build_folder.publish_blocks = merge_then_publish
    try:
        yield
    finally:
        build_folder.publish_blocks = publish


def measure_null_model(corpus_dir: Path, model_dir: Path, args, root: Path, num_workers: int = 0) -> dict:
    """Clips/s and ms per clip per stage of builds whose separator costs nothing; the fastest of ``--repeats``.

    Without workers, the finalize is also compared with the merge it replaced (:func:`former_merge`).
    """
    from clearsep_data.engine import build

    runs = []
    for repeat in range(args.repeats):
        timer = StageTimer()
        config = build_config(corpus_dir, root / f"null-{num_workers}-{repeat}", model_dir, args, num_workers=num_workers)
        merge = former_merge(timer.seconds) if num_workers == 0 else contextlib.nullcontext()
        with null_model(), timer.patched(NullSeparator), merge, stdout_to_stderr():
            start = time.perf_counter()
            summary = build(config, overwrite=True, progress=False)
            elapsed = time.perf_counter() - start
        runs.append({"seconds": elapsed, "stages": dict(timer.seconds), "summary": summary})
    fastest = min(runs, key=lambda run: run["seconds"])
    summary, stages = fastest["summary"], fastest["stages"]
    stages["separate"] = stages.pop("model_separate", 0.0) + stages.pop("model_reseparate", 0.0)
    if "former_merge" in stages:  # timed inside finalize: not part of it
        stages["finalize"] -= stages["former_merge"]
    tracks = summary.accepted_tracks + summary.rejected_tracks
    report = {
        "num_workers": num_workers,
        "clips_per_second": round(summary.clips / fastest["seconds"], 2),
        "seconds": round(fastest["seconds"], 3),
        "seconds_all_runs": [round(run["seconds"], 3) for run in runs],
        "ms_per_clip": {name: round(1000 * stages.get(name, 0.0) / summary.clips, 3) for name in NULL_STAGES},
        "finalize_ms_per_track": round(1000 * stages.get("finalize", 0.0) / tracks, 3) if tracks else None,
        "clips": summary.clips,
        "separated_clips": summary.separated_clips,
        "tracks": tracks,
    }
    if "former_merge" in stages:
        report["former_merge_ms_per_track"] = round(1000 * stages["former_merge"] / tracks, 3)
        report["publish_ms_per_track"] = round(1000 * stages["publish"] / tracks, 3)
    return report


def measure_null_models(model_dir: Path, args, root: Path) -> dict:
    """The null-model builds with 0 and ``--workers`` workers, interleaved, and their ratios."""
    corpus = demo_corpus(root / "null-corpus", args.null_clips, args.seconds, seed=2)
    runs = {workers: measure_null_model(corpus, model_dir, args, root, workers) for workers in (0, args.workers)}
    none = runs[0]
    return {
        "null_model": {f"workers_{workers}": run for workers, run in runs.items()},
        "null_worker_speedup": round(runs[args.workers]["clips_per_second"] / none["clips_per_second"], 3),
        # the former finalize (this one with the merge in place of the links) / this one
        "finalize_vs_merge": round((none["finalize_ms_per_track"] - none["publish_ms_per_track"] + none["former_merge_ms_per_track"])
                                   / none["finalize_ms_per_track"], 2),
    }


# ------------------------------------------------------------------------------------------ child processes
def build_command(corpus: Path, output: Path, model: Path, args, processes: int) -> list[str]:
    launcher = torchrun(processes) if processes > 1 else [PYTHON]
    return [*launcher, str(Path(__file__).resolve()), "--worker", str(corpus), str(output), str(model),
            "--block-size", str(args.block_size), "--batch-size", str(args.batch_size), "--clips-per-batch", str(args.clips_per_batch)]


def child_build(corpus: Path, output: Path, model: Path, args, processes: int, threads: int) -> dict:
    run = run_child(build_command(corpus, output, model, args, processes), child_env(threads))
    return {"wall_seconds": run.seconds, **run.result}


def compare_datasets(first: Path, second: Path) -> dict:
    """Whether two builds wrote the same dataset: byte for byte, and up to float rounding.

    Float rounding differs between thread counts (oneDNN splits reductions by thread), so the model outputs of a
    2-thread and a 1-thread process may differ in the last bits: the same tracks with the same accept/reject decisions,
    audio within a few 16-bit steps, scores within 1e-3 dB, is a match.
    """
    import pyarrow.parquet as pq

    from clearsep_data.audio import decode_flac

    identical, same_tracks, max_lsb, max_score = True, True, 0, 0.0
    for split in ("train", "rejected"):
        tables = []
        for output in (first, second):
            shards = sorted((output / "data").glob(f"{split}-*.parquet"))
            tables.append([row for shard in shards for row in pq.read_table(shard).to_pylist()])
        one, two = tables
        identical &= one == two
        same_tracks &= [(r["track_id"], r["reject_reason"]) for r in one] == [(r["track_id"], r["reject_reason"]) for r in two]
        for a, b in zip(one, two):
            if a["audio"]["bytes"] != b["audio"]["bytes"]:
                x, y = decode_flac(a["audio"]["bytes"])[0], decode_flac(b["audio"]["bytes"])[0]
                max_lsb = max(max_lsb, int(round(float(np.abs(x - y).max()) * 32768)))
            for score in ("re_sdr", "re_sisdr", "energy_ratio", "consistency_sisdr", "leakage_db"):
                if a[score] is not None and b[score] is not None and np.isfinite(a[score]) and np.isfinite(b[score]):
                    max_score = max(max_score, abs(a[score] - b[score]))
    identical &= (first / "skips.jsonl").read_text() == (second / "skips.jsonl").read_text()
    return {
        "identical": identical,
        "match": identical or (same_tracks and max_lsb <= 4 and max_score <= 1e-3),
        "same_tracks_and_decisions": same_tracks,
        "max_audio_difference_lsb": max_lsb,
        "max_score_difference_db": round(max_score, 6),
    }


def measure_scaleout(corpus: Path, model: Path, args, root: Path) -> dict:
    """1 process x 2 threads vs 2 processes x 1 thread (the target), and vs 1 process x 1 thread (process scaling)."""
    runs = {
        "one_process_two_threads": child_build(corpus, root / "scale-1x2", model, args, processes=1, threads=2),
        "two_processes_one_thread": child_build(corpus, root / "scale-2x1", model, args, processes=2, threads=1),
        "one_process_one_thread": child_build(corpus, root / "scale-1x1", model, args, processes=1, threads=1),
    }
    comparison = compare_datasets(root / "scale-1x2", root / "scale-2x1")
    two = runs["two_processes_one_thread"]
    return {
        "scaleout_speedup": round(runs["one_process_two_threads"]["build_seconds"] / two["build_seconds"], 3),
        "scaleout_speedup_wall": round(runs["one_process_two_threads"]["wall_seconds"] / two["wall_seconds"], 3),
        "scaleout_speedup_vs_one_thread": round(runs["one_process_one_thread"]["build_seconds"] / two["build_seconds"], 3),
        "scaleout_outputs_equal": comparison["match"],
        "scaleout_output_comparison": comparison,
        "scaleout_seconds": {
            name: {"build": round(run["build_seconds"], 3), "wall": round(run["wall_seconds"], 3)} for name, run in runs.items()
        },
        "scaleout_clips_per_second": {name: round(run["clips"] / run["build_seconds"], 3) for name, run in runs.items()},
    }


def start_rss_builds(model: Path, args, root: Path) -> Future:
    """Builds of the small and of the large corpus, started in the background at the same time (one thread each):
    sharing the CPU changes their speed, not their memory. The future's result is the report entries."""
    corpora = [demo_corpus(root / f"rss-corpus-{clips}", clips, args.rss_seconds, seed=1) for clips in args.rss_clips]
    commands = [build_command(corpus, root / f"rss-{clips}", model, args, 1) for corpus, clips in zip(corpora, args.rss_clips)]

    def measure() -> dict:
        runs = run_children(commands, child_env(1))
        peaks = {clips: run.result["peak_rss_bytes"] for clips, run in zip(args.rss_clips, runs)}
        small, large = args.rss_clips
        return {
            "rss_growth": round(peaks[large] / peaks[small], 3),
            "rss_peak_mib": {str(clips): mib(peak) for clips, peak in peaks.items()},
            "rss_build_seconds_concurrent": {str(clips): round(run.result["build_seconds"], 2) for clips, run in zip(args.rss_clips, runs)},
            "rss_clip_seconds": args.rss_seconds,
        }

    pool = ThreadPoolExecutor(1)
    future = pool.submit(measure)
    pool.shutdown(wait=False)
    return future


# ------------------------------------------------------------------------------------------ long clips
def long_clip_corpus(folder: Path, minutes: float) -> Path:
    """A corpus of one clip of ``minutes``: the 3-event 10 s clip of a one-clip demo corpus, repeated."""
    import soundfile as sf

    from clearsep_data.corpus_writer import TRAIN_SEGMENTS, write_segments
    from clearsep_data.demo_corpus import generate_demo_corpus

    generate_demo_corpus(folder, clips=1, eval_clips=0, seconds=10.0, single_event_fraction=0.0)
    segments = folder / TRAIN_SEGMENTS
    ytid, _, _, labels = segments.read_text().splitlines()[-1].split(", ", 3)
    clip, rate = sf.read(folder / "audio" / f"{ytid}.flac", dtype="int16")
    length = int(minutes * 60 * rate)
    sf.write(folder / "audio" / f"{ytid}.flac", np.resize(clip, length), rate, format="FLAC", subtype="PCM_16")
    write_segments(segments, [(ytid, 0.0, length / rate, labels.strip('"').split(","))], "benchmarks/engine.py")
    return folder


def measure_long_clips(model_dir: Path, args, root: Path) -> dict:
    """Peak RSS, time and tracks of a one-process, one-thread build of one clip per length, shortest first."""
    per_length = {}
    for minutes in sorted(args.long_clip_minutes):
        corpus, output = long_clip_corpus(root / f"long-{minutes:g}", minutes), root / f"long-{minutes:g}-out"
        run = run_child(build_command(corpus, output, model_dir, args, 1), child_env(1))
        summary = json.loads((output / "build.json").read_text())["summary"]
        tracks = summary["accepted_tracks"] + summary["rejected_tracks"]
        per_length[f"{minutes:g}"] = {"peak_rss_mib": mib(run.result["peak_rss_bytes"]), "build_seconds": round(run.result["build_seconds"], 1),
                                      "tracks": tracks, "load_average_after": list(os.getloadavg())}
    longest = per_length[f"{max(args.long_clip_minutes):g}"]
    return {"long_clip": per_length, "long_clip_peak_gib": round(longest["peak_rss_mib"] / 1024, 3)}


# ------------------------------------------------------------------------------------------ FLOPs
def model_flops(presets: tuple[str, ...] = ("small", "audiosep"), seconds: float = 10.0) -> dict:
    """FLOPs of one forward pass over a ``seconds`` clip (1 and 2 queries) of the small and audiosep presets.

    Counted on fake tensors (shapes only, no arithmetic), so the audiosep preset costs no compute here.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    result = {}
    for preset in presets:
        model = demo_model(preset)
        names = list(model.config.id2label.values())
        counts = {}
        for queries in (1, 2):
            with FakeTensorMode(allow_non_fake_inputs=True), torch.inference_mode(), FlopCounterMode(display=False) as counter:
                mixture = torch.zeros(1, int(seconds * model.config.sampling_rate))
                model(mixture, model.query_ids(names[:queries])[None])
            counts[queries] = counter.get_total_flops()
        result[preset] = {
            "sampling_rate": model.config.sampling_rate,
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            "gflops_first_query": round(counts[1] / 1e9, 2),
            "gflops_each_extra_query": round((counts[2] - counts[1]) / 1e9, 2),
        }
    result["clip_seconds"] = seconds
    result["counted"] = "torch.utils.flop_counter.FlopCounterMode (convolutions and matmuls; a multiply-add = 2 FLOPs)"
    return result


def verdicts(report: dict) -> dict:
    met = {}
    for key, (relation, target) in TARGETS.items():
        if key not in report:  # --null-model
            continue
        value = report[key]
        met[key] = {"value": value, "target": f"{relation} {target}", "met": value <= target if relation == "<=" else value >= target}
    return met


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    report: dict = {"machine": machine(), "threads": args.threads, "quick": args.quick}
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="clearsep-bench-") as folder:
        root = Path(folder)
        with phase("setup", phases):
            corpus = demo_corpus(root / "corpus", args.clips, args.seconds)
            model_dir = save_demo_model(root / "model")
        report["corpus"] = {"clips": args.clips, "clip_seconds": args.seconds, "sampling_rate": 16000, "block_size": args.block_size}
        report["clips_per_batch"] = args.clips_per_batch
        if args.long_clip_minutes:
            with phase("long_clip", phases):
                report.update(measure_long_clips(model_dir, args, root))
            report["phase_seconds"] = phases
            report["targets"] = verdicts(report)
            finish(report, started)
            return
        if not args.overhead:
            with phase("null_model", phases):
                report.update(measure_null_models(model_dir, args, root))
        if not args.null_model:
            with phase("overhead", phases):
                report.update(measure_overhead(corpus, model_dir, args, root))
        if args.null_model or args.overhead:
            report["phase_seconds"] = phases
            report["targets"] = verdicts(report)
            finish(report, started)
            return
        with phase("kth_query", phases):
            clip = np.random.default_rng(0).standard_normal(int(args.seconds * 16000)).astype(np.float32) * 0.1
            model = demo_model()
            costs = query_costs(model, clip, list(model.config.id2label.values())[:4], repeats=3 if args.quick else 7)
            report["kth_query_ratio"] = max(costs["kth_query_ratio_fastest"].values())
            report["query_costs"] = costs
        with phase("scaleout", phases):
            report.update(measure_scaleout(corpus, model_dir, args, root))
        with phase("rss and flops", phases):  # FLOPs are counted on fake tensors: no timing to disturb
            rss = start_rss_builds(model_dir, args, root)
            report["model_flops"] = model_flops(("small",) if args.quick else ("small", "audiosep"))
            report.update(rss.result())
    report["phase_seconds"] = phases
    report["targets"] = verdicts(report)
    finish(report, started)


if __name__ == "__main__":
    sys.exit(main())
