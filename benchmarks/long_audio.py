"""Time and peak memory of ``ClearSepModel.separate`` on long recordings (chunked inference). Prints one JSON object.

A random-initialised ``small`` model separates 2 queries from noise of each length (default 10 s, 60 s and 10 min)
with the default chunking (``config.segment_seconds`` chunks plus the receptive field as context, crossfaded). Time
should grow linearly with the length and memory should not: ``separate`` batches up to ``batch_size`` equal-length
chunks in one forward pass, so its working memory grows until the input has ``batch_size`` chunks and then stays
flat; with ``batch_size=1`` it is flat from the first chunk. Each batch size runs in a child process of its own
(one torch thread, see benchmarks/README.md), lengths in ascending order, the peak RSS (``VmHWM``) reset before each.

Reported per length: seconds, seconds per second of audio, peak RSS, and the peak over the RSS of the warmed-up model
minus the input and output arrays (``working_mib``: what chunking should bound; the output itself necessarily grows
with the length). ``time_per_second_growth`` compares the longest input with the shortest chunked one (a single-chunk
input has no context to compute, so it is cheaper per second).

    python benchmarks/long_audio.py [--quick] [--lengths 10,60,600] [--batch-sizes 8,1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from _common import PYTHON, child_env, demo_model, finish, machine, mib, peak_rss_bytes, reset_peak_rss, rss_bytes, run_child

QUERIES = ["Speech", "Bark"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s, 60 s and 2 min: under a minute")
    parser.add_argument("--lengths", help="clip lengths in seconds (default 10,60,600; quick 10,60,120)")
    parser.add_argument("--batch-sizes", default="8,1", help="separate() batch sizes to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", type=int, metavar="BATCH_SIZE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.lengths = [float(x) for x in (args.lengths or ("10,60,120" if args.quick else "10,60,600")).split(",")]
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
    return args


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model = demo_model()
    rate = model.config.sampling_rate
    warm = np.random.default_rng(1).standard_normal(rate).astype(np.float32) * 0.1
    model.separate(warm, QUERIES, batch_size=args.worker)
    baseline = rss_bytes()  # the model and the libraries, before any long input
    results = {}
    for seconds in sorted(args.lengths):
        audio = np.random.default_rng(0).standard_normal(int(seconds * rate)).astype(np.float32) * 0.1
        reset_peak_rss()
        start = time.perf_counter()
        tracks = model.separate(audio, QUERIES, batch_size=args.worker)
        elapsed = time.perf_counter() - start
        peak = peak_rss_bytes()
        arrays = audio.nbytes + tracks.nbytes
        results[f"{seconds:g}"] = {
            "seconds": round(elapsed, 3),
            "seconds_per_audio_second": round(elapsed / seconds, 5),
            "chunks": len(model.feature_extractor.chunk_plan(len(audio))),
            "peak_rss_mib": mib(peak),
            "working_mib": mib(max(0, peak - baseline - arrays)),
            "input_output_mib": mib(arrays),
        }
        del audio, tracks
    print(json.dumps(results))


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    started = time.perf_counter()
    report: dict = {"machine": machine(), "threads": args.threads, "quick": args.quick, "preset": "small", "queries": len(QUERIES)}
    lengths = ",".join(f"{value:g}" for value in args.lengths)
    shortest, longest = f"{min(args.lengths):g}", f"{max(args.lengths):g}"
    for batch_size in args.batch_sizes:
        command = [PYTHON, __file__, "--worker", str(batch_size), "--lengths", lengths, "--threads", str(args.threads)]
        per_length = run_child(command, child_env(args.threads)).result
        chunked = min((key for key, value in per_length.items() if value["chunks"] > 1), key=float, default=shortest)
        report[f"batch_size_{batch_size}"] = {
            "per_length": per_length,
            # 1.0 = perfectly linear time; working memory: longest / shortest input.
            "time_per_second_growth": round(
                per_length[longest]["seconds_per_audio_second"] / per_length[chunked]["seconds_per_audio_second"], 3
            ),
            "working_memory_growth": round(
                max(per_length[longest]["working_mib"], 1.0) / max(per_length[shortest]["working_mib"], 1.0), 3
            ),
        }
    finish(report, started)


if __name__ == "__main__":
    sys.exit(main())
