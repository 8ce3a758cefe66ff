"""Round-0 training on the real-sound benchmark, one ablation arm per run; held-out SI-SDRi on unseen recordings.
Prints one JSON object.

The round-0 track dataset is what ``iterate``'s round 0 trains on: the corpus's clean single-event clips
(``clearsep-data build`` without a model), built once into ``--work``. A new model trains for ``--steps`` steps
with the loop's round settings (:func:`clearsep_data.loop.round_training`) plus the arm's, scoring the corpus's
``valid`` split (other mixtures of the held-out recordings, ``realsound.py --valid-clips``) every ``--eval-every``
steps and keeping the best; the kept model is then scored on the ``eval`` split (recordings no training clip uses),
with the ideal-ratio-mask ceiling. One run at a time: each trains in this process with torch's threads set by
``OMP_NUM_THREADS`` (recorded, with the load average, since the machine may be shared).

    python benchmarks/realsound.py --output /tmp/real --clips 1000 --single-event-fraction 0.2 --valid-clips 40
    OMP_NUM_THREADS=1 python benchmarks/real_training.py --corpus /tmp/real --work /tmp/real-runs --arm baseline --steps 800
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from _common import finish, machine, phase, stdout_to_stderr

ARMS: dict[str, dict] = {
    "baseline": {},
    "augment": {"augment": True},
    "medium": {"preset": "medium"},
    "constant_lr": {"lr_scheduler_type": "constant_with_warmup"},
    "segment4s": {"segment_seconds": 4.0},
    "augment_medium": {"augment": True, "preset": "medium"},
}
"""Each arm's settings over the loop's round settings (``TrainingArguments`` fields)."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="A realsound.py corpus with a valid split.")
    parser.add_argument("--work", type=Path, required=True, help="Folder of the track dataset and the runs.")
    parser.add_argument("--arm", choices=sorted(ARMS), default="baseline")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                        help="Further TrainingArguments settings, e.g. lr=0.001 (the value parsed as JSON if it parses).")
    return parser.parse_args()


def parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            settings[name] = json.loads(value)
        except json.JSONDecodeError:
            settings[name] = value
    return settings


def round0_tracks(corpus: Path, work: Path) -> Path:
    """The corpus's single-event clips as a track dataset (built once)."""
    from clearsep_data.engine import BuildConfig, build

    tracks = work / "round0-tracks"
    with stdout_to_stderr():
        build(BuildConfig(corpus=str(corpus), output_dir=tracks), progress=False)
    return tracks


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    import torch

    from clearsep_data.evaluation import evaluate_on_benchmark
    from clearsep_data.loop import LoopConfig, round_arguments
    from clearsep_data.modeling import ClearSepModel
    from clearsep_data.training import train

    report = {
        "benchmark": "real_training",
        "command": shlex.join(["python", "benchmarks/real_training.py", *sys.argv[1:]]),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
        "corpus": json.loads((args.corpus / "corpus.json").read_text()) | {"classes": None, "class_recordings": None, "packages": None},
    }
    timings: dict[str, float] = {}
    with phase("round-0 track dataset", timings):
        tracks = round0_tracks(args.corpus, args.work)
    output = args.work / f"{args.arm}-seed{args.seed}"
    loop = LoopConfig(corpus=str(args.corpus), output_dir=args.work, round0_steps=args.steps, seed=args.seed, progress=False)
    training = round_arguments(loop, 0, tracks, output, None)
    training = replace(training, eval_every=args.eval_every, save_every=0, resume=False,
                       **ARMS[args.arm], **parse_settings(args.set))
    with phase(f"train {args.arm}", timings):
        result = train(training)
    curve = [
        {"step": record["step"], "valid_si_sdri": round(record["eval_si_sdri"], 3)}
        for record in map(json.loads, Path(result.metrics_path).read_text().splitlines())
        if "eval_si_sdri" in record
    ]
    with phase("evaluate on the eval split", timings):
        evaluation = evaluate_on_benchmark(ClearSepModel.from_pretrained(output).eval(), args.corpus, split="eval")
    summary = evaluation.to_dict()
    model = ClearSepModel.from_pretrained(output)
    report.update({
        "arm": args.arm,
        "settings": {key: value for key, value in training.to_dict().items() if key not in ("datasets", "output_dir")},
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "training_tracks": json.loads((output / "training_args.json").read_text())["provenance"]["tracks"],
        "train_seconds": timings[f"train {args.arm}"],
        "samples_per_second": round(result.samples_per_second, 2),
        "valid_curve": curve,
        "kept_step": result.eval["step"] if result.eval else None,
        "eval": {
            "split": "eval",
            "num_items": summary["num_items"],
            "si_sdri": summary["metrics"]["si_sdri"],
            "sdri": summary["metrics"]["sdri"],
            "oracle_si_sdri": summary["oracle"]["si_sdri"],
            "per_class_si_sdri": {name: round(row["si_sdri"], 2) for name, row in summary["per_class"].items()},
        },
        "timings": timings,
    })
    finish(report, started)


if __name__ == "__main__":
    main()
