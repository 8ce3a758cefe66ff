"""Cost of extra queries: time of ``ClearSepModel.separate`` on a 10 s, 16 kHz clip for 1..4 queries.

The encoder runs once per mixture and only the FiLM decoder runs per query, so the k-th query should cost a
fraction of the first. Prints JSON: median seconds per query count, the marginal cost of each extra query, and
``kth_query_ratio`` = marginal cost of the k-th query / cost of the first (a random-initialised "small" preset; the
cost does not depend on the weights). Also lists the parameter counts of both presets.

    python benchmarks/multi_query.py [--quick] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from clearsep_data import ClearSepConfig, ClearSepModel

LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark", "/m/03kmc9": "Siren", "/m/06mb1": "Rain"}
MAX_QUERIES = len(LABELS)


def preset_model(name: str) -> ClearSepModel:
    config = ClearSepConfig.from_preset(name, label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())))
    return ClearSepModel(config).eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = preset_model("small")
    rate = model.config.sampling_rate
    clip = np.random.default_rng(0).standard_normal(int(args.seconds * rate)).astype(np.float32) * 0.1
    queries = list(LABELS.values())
    model.separate(clip, queries)  # warm-up (allocator, oneDNN kernels)

    timings: dict[int, list[float]] = {k: [] for k in range(1, MAX_QUERIES + 1)}
    for _ in range(repeats):
        for k in timings:  # interleaved, so load changes on a shared machine hit every k alike
            start = time.perf_counter()
            model.separate(clip, queries[:k])
            timings[k].append(time.perf_counter() - start)
    seconds = {k: statistics.median(values) for k, values in timings.items()}
    marginal = {k: seconds[k] - seconds[k - 1] for k in range(2, MAX_QUERIES + 1)}
    ratios = {k: marginal[k] / seconds[1] for k in marginal}
    report = {
        "preset": "small",
        "clip_seconds": args.seconds,
        "sampling_rate": rate,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "seconds": {str(k): round(value, 4) for k, value in seconds.items()},
        "marginal_seconds": {str(k): round(value, 4) for k, value in marginal.items()},
        "kth_query_ratio": {str(k): round(value, 3) for k, value in ratios.items()},
        "mean_kth_query_ratio": round(statistics.mean(ratios.values()), 3),
        "parameters": {"small": parameter_count(model), "audiosep": parameter_count(preset_model("audiosep"))},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
