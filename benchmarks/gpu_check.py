"""The model's throughput on one GPU beside the engine's CPU ceiling: is the model the bottleneck? Prints one JSON object.

For the ``small`` and ``audiosep`` presets (random weights: speed does not depend on them), in bf16 autocast, the
separations a build makes of a 10 s clip with 2 queries (the primary ``separate`` and the re-separation of its 2 tracks
with both queries) are timed with 1, 8 and 32 clips per ``separate`` call (``ClearSepModel.separate`` takes a list of
waveforms and batches their chunks; ``batch_size`` is set to the clips per call). Reported per preset and clips per
call: clips/s, and the GPU's utilisation (``torch.cuda.utilization``, NVML's percentage of time a kernel ran) sampled
during the timed calls. Beside it: the engine's null-model ceiling (``engine.py``'s :func:`measure_null_model`: the
build with an instant separator, 0 DataLoader workers), the most clips/s the CPU side of one process gives.

Meant for a lent GPU (about 5 minutes); ``--device cpu --quick`` is a smoke check of the script (1 s clips, 1 and 2
clips per call, the small preset).

    python benchmarks/gpu_check.py [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from _common import demo_model, finish, machine, phase, save_demo_model, stdout_to_stderr

QUERIES = ["Speech", "Bark"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="smoke check: small preset, 1 s clips, 1 and 2 clips per call")
    parser.add_argument("--seconds", type=float, help="clip length (default 10; quick 1)")
    parser.add_argument("--clips-per-call", help="comma-separated (default 1,8,32; quick 1,2)")
    parser.add_argument("--presets", help="comma-separated (default small,audiosep; quick small)")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="time each setting at least this long (quick 0.5)")
    args = parser.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 10.0)
    args.clips_per_call = [int(n) for n in (args.clips_per_call or ("1,2" if args.quick else "1,8,32")).split(",")]
    args.presets = (args.presets or ("small" if args.quick else "small,audiosep")).split(",")
    args.min_seconds = 0.5 if args.quick else args.min_seconds
    return args


class UtilisationSampler:
    """Samples ``torch.cuda.utilization()`` every 0.1 s in a thread (nothing on the CPU)."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self._stop = device, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(torch.cuda.utilization(self.device))

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def mean(self) -> float | None:
        return round(statistics.mean(self.samples), 1) if self.samples else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clip_rounds(model, clips: list[np.ndarray], device: torch.device, min_seconds: float) -> tuple[int, float, float | None]:
    """Separate and re-separate ``clips`` (one call each) until ``min_seconds`` pass: rounds, seconds, utilisation."""
    options = dict(batch_size=len(clips), use_bf16=True)

    def one_round() -> None:
        tracks = model.separate(clips, [QUERIES] * len(clips), **options)
        model.separate([track for clip_tracks in tracks for track in clip_tracks], [QUERIES] * (2 * len(clips)), **options)

    one_round()  # warm-up: kernels, allocator
    synchronize(device)
    rounds, start = 0, time.perf_counter()
    with UtilisationSampler(device) as sampler:
        while time.perf_counter() - start < min_seconds:
            one_round()
            rounds += 1
        synchronize(device)
    return rounds, time.perf_counter() - start, sampler.mean()


def measure_model(preset: str, args, device: torch.device) -> dict:
    model = demo_model(preset).to(device)
    rate = model.config.sampling_rate
    rng = np.random.default_rng(0)
    results = {}
    for count in args.clips_per_call:
        clips = [rng.standard_normal(int(args.seconds * rate)).astype(np.float32) * 0.1 for _ in range(count)]
        rounds, seconds, utilisation = clip_rounds(model, clips, device, args.min_seconds)
        results[str(count)] = {"clips_per_second": round(rounds * count / seconds, 2), "gpu_utilisation_percent": utilisation,
                               "rounds": rounds, "seconds": round(seconds, 2)}
    return {"sampling_rate": rate, "clips_per_call": results}


def null_ceiling(args) -> dict:
    """The engine's clips/s with an instant separator (0 workers, 8 clips per call), on 64 demo clips of ``--seconds``."""
    from _common import demo_corpus
    from engine import measure_null_model

    with tempfile.TemporaryDirectory(prefix="clearsep-gpu-check-") as folder:
        root = Path(folder)
        corpus = demo_corpus(root / "corpus", 16 if args.quick else 64, args.seconds)
        model_dir = save_demo_model(root / "model")
        settings = argparse.Namespace(repeats=1, block_size=8, batch_size=8, clips_per_batch=8)
        with stdout_to_stderr():
            return measure_null_model(corpus, model_dir, settings, root)


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; pass --device cpu for the smoke check")
    report: dict = {"machine": machine(), "device": str(device), "bf16": True, "clip_seconds": args.seconds, "queries": len(QUERIES)}
    phases: dict[str, float] = {}
    report["models"] = {}
    for preset in args.presets:
        with phase(preset, phases), stdout_to_stderr():
            report["models"][preset] = measure_model(preset, args, device)
    with phase("null_model", phases):
        report["null_model_cpu_ceiling"] = null_ceiling(args)
    ceiling = report["null_model_cpu_ceiling"]["clips_per_second"]
    report["model_vs_cpu_ceiling"] = {
        preset: {count: round(values["clips_per_second"] / ceiling, 3) for count, values in result["clips_per_call"].items()}
        for preset, result in report["models"].items()
    }
    report["phase_seconds"] = phases
    finish(report, started)


if __name__ == "__main__":
    sys.exit(main())
