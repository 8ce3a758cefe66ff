"""Training throughput (mixtures/s) of ``clearsep-data train`` on CPU: processes, threads and bf16. Prints one JSON object.

A demo corpus is turned into a track dataset (``clearsep-data build`` without a model: its single-event clips), then
a new ``small`` model trains on it for ``--steps`` steps in each configuration, through the real command line:

- ``fp32_1proc_2threads``: one process, 2 OpenMP threads (what a plain ``clearsep-data train`` uses on 2 cores);
- ``fp32_1proc_2threads_passive``: the same with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
  spinning: see benchmarks/README.md on shared machines);
- ``fp32_1proc_1thread``: one process, 1 thread;
- ``fp32_2proc_1thread``: ``torchrun --nproc_per_node 2``, 1 thread each (DDP over gloo; twice the mixtures per step);
- ``bf16_1proc_1thread``: one process, 1 thread, ``--bf16`` (autocast; this CPU has AVX512-BF16, no AMX).

Throughput is measured over the steps after ``--warmup`` (from the cumulative rates ``metrics.jsonl`` logs every
step), so start-up, data caching and the first oneDNN kernel builds are left out.

    python benchmarks/training.py [--quick] [--steps N] [--batch-size B] [--segment-seconds S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, child_env, demo_corpus, finish, machine, phase, run_child, stdout_to_stderr, torchrun

CONFIGS = {
    "fp32_1proc_2threads": dict(processes=1, threads=2, bf16=False),
    "fp32_1proc_2threads_passive": dict(processes=1, threads=2, bf16=False, env={"OMP_WAIT_POLICY": "PASSIVE"}),
    "fp32_1proc_1thread": dict(processes=1, threads=1, bf16=False),
    "fp32_2proc_1thread": dict(processes=2, threads=1, bf16=False),
    "bf16_1proc_1thread": dict(processes=1, threads=1, bf16=True),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller steps")
    parser.add_argument("--steps", type=int, help="steps per configuration (default 30; quick 12)")
    parser.add_argument("--warmup", type=int, help="steps left out of the rate (default 5; quick 3)")
    parser.add_argument("--batch-size", type=int, help="mixtures per process per step (default 8; quick 4)")
    parser.add_argument("--segment-seconds", type=float, help="training crop length (default 4; quick 2)")
    args = parser.parse_args()
    args.steps = args.steps or (12 if args.quick else 30)
    args.warmup = args.warmup or (3 if args.quick else 5)
    args.batch_size = args.batch_size or (4 if args.quick else 8)
    args.segment_seconds = args.segment_seconds or (2.0 if args.quick else 4.0)
    return args


def track_dataset(root: Path) -> Path:
    from clearsep_data.engine import BuildConfig, build

    corpus = demo_corpus(root / "corpus", clips=60, seconds=4.0)
    with stdout_to_stderr():
        build(BuildConfig(corpus=str(corpus), output_dir=root / "tracks"), progress=False)
    return root / "tracks"


def steady_rate(metrics: Path, warmup: int, samples_per_step: int) -> float:
    """Mixtures/s between step ``warmup`` and the last step, from the cumulative ``steps_per_second`` of each line."""
    lines = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    elapsed = {line["step"]: line["step"] / line["steps_per_second"] for line in lines if "steps_per_second" in line}
    last = max(elapsed)
    return (last - warmup) * samples_per_step / (elapsed[last] - elapsed[warmup])


def train_run(name: str, tracks: Path, root: Path, args) -> dict:
    config = CONFIGS[name]
    output = root / name
    launcher = torchrun(config["processes"]) if config["processes"] > 1 else [PYTHON]
    command = [
        *launcher, "-m", "clearsep_data", "train", str(tracks), "--output", str(output),
        "--ontology", str(tracks.parent / "corpus" / "ontology.json"),
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--segment-seconds", str(args.segment_seconds),
        "--eval-every", "0", "--save-every", "0", "--log-every", "1", "--no-progress", "--no-resume",
        *(["--bf16"] if config["bf16"] else []),
    ]  # fmt: skip
    run = run_child(command, child_env(config["threads"], **config.get("env", {})))
    samples_per_step = args.batch_size * config["processes"]
    rate = steady_rate(output / "metrics.jsonl", args.warmup, samples_per_step)
    return {**config, "mixtures_per_second": round(rate, 3), "wall_seconds": round(run.seconds, 1)}


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    report: dict = {
        "machine": machine(),
        "quick": args.quick,
        "preset": "small",
        "steps": args.steps,
        "warmup_steps_excluded": args.warmup,
        "batch_size_per_process": args.batch_size,
        "segment_seconds": args.segment_seconds,
        "runs": {},
    }
    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="clearsep-train-bench-") as folder:
        root = Path(folder)
        with phase("track dataset", phases):
            tracks = track_dataset(root)
        for name in CONFIGS:
            with phase(name, phases):
                report["runs"][name] = train_run(name, tracks, root, args)
    rate = {name: run["mixtures_per_second"] for name, run in report["runs"].items()}
    report["speedup_2proc_vs_1proc_2threads"] = round(rate["fp32_2proc_1thread"] / rate["fp32_1proc_2threads"], 3)
    report["speedup_passive_vs_default_wait_2threads"] = round(rate["fp32_1proc_2threads_passive"] / rate["fp32_1proc_2threads"], 3)
    report["speedup_2proc_vs_1proc_1thread"] = round(rate["fp32_2proc_1thread"] / rate["fp32_1proc_1thread"], 3)
    report["speedup_bf16_vs_fp32"] = round(rate["bf16_1proc_1thread"] / rate["fp32_1proc_1thread"], 3)
    report["phase_seconds"] = phases
    finish(report, started)


if __name__ == "__main__":
    sys.exit(main())
