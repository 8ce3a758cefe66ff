"""Helpers shared by the benchmark scripts: machine description, demo data, child processes with their peak RSS.

Benchmarks run as scripts (``python benchmarks/engine.py``), so this module is imported as ``_common``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the numbers were measured on; call at the start and again at the end (``load_average``)."""
    import torch

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": list(os.getloadavg()),
    }


def finish(report: dict, started: float) -> None:
    """Add the closing load average and wall time, and print the report as the script's one JSON object."""
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


@contextlib.contextmanager
def stdout_to_stderr():
    """Keep library chatter off stdout, which carries only the JSON report."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def phase(name: str, timings: dict):
    """Time a phase of a benchmark into ``timings[name]`` and log it on stderr."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"[bench] {name}: {timings[name]} s", file=sys.stderr, flush=True)


def demo_vocabulary() -> tuple[list[str], dict[int, str]]:
    from clearsep_data.demo_corpus import label_vocabulary

    mids, names = zip(*label_vocabulary())
    return list(mids), dict(enumerate(names))


def demo_model(preset: str = "small", seed: int = 0, **overrides):
    """A random-initialised ``ClearSepModel`` of ``preset`` over the demo vocabulary, in eval mode."""
    import torch

    from clearsep_data import ClearSepConfig, ClearSepModel

    mids, names = demo_vocabulary()
    torch.manual_seed(seed)
    config = ClearSepConfig.from_preset(preset, label_mids=mids, id2label=names, **overrides)
    return ClearSepModel(config).eval()


def save_demo_model(folder: Path, preset: str = "small") -> Path:
    demo_model(preset).save_pretrained(folder)
    return folder


def demo_corpus(folder: Path, clips: int, seconds: float, seed: int = 0, sampling_rate: int = 16000) -> Path:
    from clearsep_data.demo_corpus import generate_demo_corpus

    generate_demo_corpus(folder, clips=clips, eval_clips=0, seed=seed, sampling_rate=sampling_rate, seconds=seconds)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(nproc: int) -> list[str]:
    """The launcher prefix of ``torchrun --nproc_per_node nproc`` on a free local port."""
    return [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port())]


def child_env(threads: int, **extra: str) -> dict:
    """Environment of a benchmarked child: ``threads`` OpenMP/MKL threads, CPU-only accelerate."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "ACCELERATE_USE_CPU": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")])),
        **extra,
    }


@dataclass
class ChildRun:
    seconds: float
    """Wall time from start to exit (interpreter start-up and imports included)."""
    result: dict
    """The JSON object the child printed last on stdout (empty when it printed nothing)."""


def run_children(commands: list[list[str]], env: dict, timeout: float = 3600) -> list[ChildRun]:
    """Run ``commands`` at the same time, each to completion, and read the JSON each prints last (if any).

    Raises ``RuntimeError`` with the end of a failing child's stderr.
    """
    from concurrent.futures import ThreadPoolExecutor

    def run(command: list[str]) -> ChildRun:
        start = time.perf_counter()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(command)} ran past {timeout} s") from None
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-4000:]}")
        lines = done.stdout.strip().splitlines()
        return ChildRun(time.perf_counter() - start, json.loads(lines[-1]) if lines else {})

    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(run, commands))


def run_child(command: list[str], env: dict, timeout: float = 3600) -> ChildRun:
    return run_children([command], env, timeout)[0]


def peak_rss_bytes() -> int:
    """This process's peak resident set since it started (``VmHWM``).

    Not ``getrusage``: Linux carries a process's ``ru_maxrss`` across ``exec`` from the forked parent, so a child
    of a large benchmark process would report the parent's size. ``VmHWM`` belongs to the new program alone.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs``), to measure several peaks in one process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def mib(value: float) -> float:
    return round(value / 2**20, 1)
