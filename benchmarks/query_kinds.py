"""Parent and absent queries on the demo corpus: does "Dog" give the Bark, and does an absent class give silence?

Trains a round-0 model as ``make demo`` does (``iterate``'s round 0: the demo corpus's clean single-event clips,
``--round0-steps`` steps, 2 s crops, lr 3e-3) with the given ``--parent-rate`` and ``--silence-rate``, or takes
``--model``, then evaluates it on the corpus's held-out split (``eval_segments.csv`` with references):

* parent queries: every vocabulary class above a clip's query (Dog, Bird, Clock, Music on the demo corpus), scored
  against the sum of the references below it; ``si_sdr_minus_child`` is the mean SI-SDR of a parent minus that of
  the child's own query on the same clip (target: within 1 dB);
* absent queries: ``--absent-per-clip`` classes unrelated to every label of the clip; the output level relative to
  the mixture (target: median <= -30 dB).

Prints one JSON object.

    OMP_NUM_THREADS=1 python benchmarks/query_kinds.py --corpus demo-output/corpus --work /tmp/query-kinds \
        [--round0-steps 400] [--parent-rate 0.5] [--silence-rate 0.2] [--model MODEL] [--presence-gate none]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import finish, machine, stdout_to_stderr

TRAINING_KEYS = ("steps", "parent_rate", "silence_rate", "segment_seconds", "lr", "batch_size", "seed")
"""The training settings reported (from the model's ``training_args.json``)."""


def parent_table(items: list) -> dict[str, dict]:
    """Per parent class: mean SI-SDR of the parent query and of its child's own query on the same clips."""
    own = {(item.clip_id, item.query): item for item in items if item.kind == "label"}
    table: dict[str, dict] = {}
    for item in items:
        child = own.get((item.clip_id, item.child)) if item.kind == "parent" else None
        if child is not None:
            row = table.setdefault(f"{item.name} ({child.name})", {"count": 0, "parent_si_sdr": 0.0, "child_si_sdr": 0.0})
            row["count"] += 1
            row["parent_si_sdr"] += item.si_sdr
            row["child_si_sdr"] += child.si_sdr
    for row in table.values():
        row["parent_si_sdr"] = round(row["parent_si_sdr"] / row["count"], 2)
        row["child_si_sdr"] = round(row["child_si_sdr"] / row["count"], 2)
        row["difference"] = round(row["parent_si_sdr"] - row["child_si_sdr"], 2)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="Demo corpus with its held-out split (make demo's).")
    parser.add_argument("--work", type=Path, required=True, help="Folder for the trained model.")
    parser.add_argument("--model", help="Evaluate this model instead of training one.")
    parser.add_argument("--round0-steps", type=int, default=400)
    parser.add_argument("--parent-rate", type=float, default=None, help="Default: train's.")
    parser.add_argument("--silence-rate", type=float, default=None, help="Default: train's.")
    parser.add_argument("--absent-per-clip", type=int, default=3)
    parser.add_argument("--presence-gate", choices=("soft", "hard", "none"), help="Default: the model's config.")
    args = parser.parse_args()

    from clearsep_data.evaluation import evaluate_on_benchmark
    from clearsep_data.loop import LoopConfig, round_training, run_loop
    from clearsep_data.modeling import ClearSepModel

    started = time.perf_counter()
    report: dict = {"machine": machine()}
    corpus = args.corpus
    model_path = args.model
    if model_path is None:
        rates = {k: v for k, v in (("parent_rate", args.parent_rate), ("silence_rate", args.silence_rate)) if v is not None}
        training = round_training(**rates)
        loop = LoopConfig(
            corpus=str(corpus), output_dir=args.work / "loop", rounds=0, round0_steps=args.round0_steps,
            training=training, progress=False,
        )  # fmt: skip
        with stdout_to_stderr():
            run_loop(loop)
        model_path = str(loop.round_dir(0) / "model")
    arguments = Path(model_path, "training_args.json")
    if arguments.is_file():
        trained = json.loads(arguments.read_text())
        report["training"] = {key: trained.get(key) for key in TRAINING_KEYS}
    model = ClearSepModel.from_pretrained(model_path).eval()
    if args.presence_gate is not None:
        model.config.presence_gate = args.presence_gate
    report["presence_gate"] = model.config.presence_gate if model.config.presence_head else None
    with stdout_to_stderr():
        result = evaluate_on_benchmark(model, corpus, absent_per_clip=args.absent_per_clip, oracle=False)
    summary = result.to_dict()
    report.update(
        model=model_path,
        corpus=str(corpus),
        held_out={"clips": summary["num_clips"], "items": summary["num_items"], **summary["metrics"]},
        parents={**summary["parents"], "by_class": parent_table(result.items)},
        absent=summary["absent"],
    )
    finish(report, started)


if __name__ == "__main__":
    main()
