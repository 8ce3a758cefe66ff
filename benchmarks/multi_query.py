"""Cost of extra queries: time of ``ClearSepModel.separate`` on a 10 s, 16 kHz clip for 1..4 queries.

The encoder runs once per mixture and only the FiLM decoder runs per query, so the k-th query should cost a
fraction of the first. Prints JSON: median wall-clock seconds per query count, the marginal cost of each extra query,
and ``kth_query_ratio`` = marginal cost of the k-th query / cost of the first (a random-initialised "small" preset;
the cost does not depend on the weights). On a shared machine wall-clock time is noisy (other processes only ever add
time), so the same ratios are also given from the fastest run, from the process's CPU time and from the convolution
FLOPs of one forward pass (``torch.utils.flop_counter``, deterministic). Also lists the parameter counts of both
presets.

    python benchmarks/multi_query.py [--quick] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from clearsep_data import ClearSepConfig, ClearSepModel

LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark", "/m/03kmc9": "Siren", "/m/06mb1": "Rain"}


def preset_model(name: str) -> ClearSepModel:
    config = ClearSepConfig.from_preset(name, label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())))
    return ClearSepModel(config).eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def marginal_ratios(costs: dict[int, float]) -> dict[str, float]:
    """``(cost[k] - cost[k - 1]) / cost[1]`` for k = 2.., rounded."""
    return {str(k): round((costs[k] - costs[k - 1]) / costs[1], 3) for k in costs if k > 1}


def forward_flops(model: ClearSepModel, clip: np.ndarray, num_queries: int) -> float:
    """Convolution and matmul FLOPs of one forward pass over ``clip`` with ``num_queries`` queries."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.from_numpy(clip)[None], torch.arange(num_queries)[None])
    return float(counter.get_total_flops())


def query_costs(model: ClearSepModel, clip: np.ndarray, queries: list[str], repeats: int) -> dict:
    """``model.separate`` costs on ``clip`` for its first 1..len(queries) queries, and the k-th query ratios.

    ``seconds``/``kth_query_ratio`` use the median wall-clock time over ``repeats``; ``*_fastest`` the minimum,
    ``*_cpu_time`` the process CPU time and ``*_flops`` the FLOP count.
    """
    model.separate(clip, queries)  # warm-up (allocator, oneDNN kernels)
    counts = range(1, len(queries) + 1)
    wall: dict[int, list[float]] = {k: [] for k in counts}
    cpu: dict[int, list[float]] = {k: [] for k in counts}
    for _ in range(repeats):
        for k in counts:  # interleaved, so load changes on a shared machine hit every k alike
            start, start_cpu = time.perf_counter(), time.process_time()
            model.separate(clip, queries[:k])
            wall[k].append(time.perf_counter() - start)
            cpu[k].append(time.process_time() - start_cpu)
    seconds = {k: statistics.median(values) for k, values in wall.items()}
    fastest = {k: min(values) for k, values in wall.items()}
    cpu_seconds = {k: statistics.median(values) for k, values in cpu.items()}
    flops = {k: forward_flops(model, clip, k) for k in counts}
    return {
        "repeats": repeats,
        "seconds": {str(k): round(value, 4) for k, value in seconds.items()},
        "marginal_seconds": {str(k): round(seconds[k] - seconds[k - 1], 4) for k in counts if k > 1},
        "kth_query_ratio": marginal_ratios(seconds),
        "fastest_seconds": {str(k): round(value, 4) for k, value in fastest.items()},
        "kth_query_ratio_fastest": marginal_ratios(fastest),
        "cpu_seconds": {str(k): round(value, 4) for k, value in cpu_seconds.items()},
        "kth_query_ratio_cpu_time": marginal_ratios(cpu_seconds),
        "gflops": {str(k): round(value / 1e9, 2) for k, value in flops.items()},
        "kth_query_ratio_flops": marginal_ratios(flops),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = preset_model("small")
    rate = model.config.sampling_rate
    clip = np.random.default_rng(0).standard_normal(int(args.seconds * rate)).astype(np.float32) * 0.1
    report = {
        "preset": "small",
        "clip_seconds": args.seconds,
        "sampling_rate": rate,
        "threads": torch.get_num_threads(),
        **query_costs(model, clip, list(LABELS.values()), args.repeats or (3 if args.quick else 7)),
        "parameters": {"small": parameter_count(model), "audiosep": parameter_count(preset_model("audiosep"))},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
