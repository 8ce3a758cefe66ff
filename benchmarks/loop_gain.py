"""Does the ClearSep loop improve separation? Prints one JSON object.

On the demo corpus, with fixed seeds and the same training budget for every arm, scores on the
held-out split (SI-SDRi, mean and per class):

- ``A``: the artificial-mixture baseline: the round-0 model (clean single-event clips only),
  trained further on the same clean clips for as many steps as the loop spends after round 0;
- ``B1``, ``B2``: the round-1 and round-2 models of the loop (engine tracks filtered by the thresholds);
- ``B1 with natural mixtures``: round 1's training on the same tracks with a quarter of the examples natural
  mixtures (the original clip, its accepted tracks as targets): an ablation of that optional strategy;
- ``C1``, ``C2``: the same two rounds with the engine's tracks *unfiltered* (every separated track, no
  thresholds, no quality weighting), to show whether the filter matters;
- ``A1``, ``A2``: the baseline at the round-1 and round-2 budgets (the fair comparisons for ``B`` and ``C``);
- ``oracle``: the ideal-ratio-mask ceiling.

    python benchmarks/loop_gain.py --seeds 0 1 --clips 300 --round0-steps 400 --train-steps 200
    python benchmarks/loop_gain.py ... --single-event-fraction 0.1   # clean single-event clips scarce
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from tempfile import mkdtemp

from clearsep_data.demo_corpus import SINGLE_EVENT_FRACTION, generate_demo_corpus
from clearsep_data.engine import BuildConfig, build
from clearsep_data.evaluation import evaluate_on_benchmark
from clearsep_data.filtering import Thresholds
from clearsep_data.loop import DEFAULT_TRAINING, LoopConfig, run_loop
from clearsep_data.modeling import ClearSepModel
from clearsep_data.training import TrainingArguments, train

NO_FILTER = Thresholds(
    min_re_sdr=float("-inf"),
    min_re_sisdr=float("-inf"),
    min_energy_ratio=float("-inf"),
    min_consistency_sisdr=float("-inf"),
    max_leakage_db=float("inf"),
)


def scores(model_dir: Path, corpus: Path) -> dict:
    """Held-out scores of a model, cached next to it so reruns only score new arms."""
    cache = model_dir / "loop_gain_scores.json"
    if cache.exists():
        return json.loads(cache.read_text())
    result = evaluate_on_benchmark(ClearSepModel.from_pretrained(model_dir).eval(), corpus, progress=None).to_dict()
    summary = {
        "si_sdri": result["metrics"]["si_sdri"],
        "sdri": result["metrics"]["sdri"],
        "per_class": {name: values["si_sdri"] for name, values in result["per_class"].items()},
        "oracle_si_sdri": result["oracle"]["si_sdri"],
    }
    cache.write_text(json.dumps(summary))
    return summary


def continue_training(work: Path, name: str, init: Path, datasets: list[Path], steps: int, seed: int, corpus: Path, **extra) -> Path:
    output = work / name
    if not (output / "model.safetensors").exists():
        train(
            TrainingArguments(
                datasets=[str(d) for d in datasets],
                output_dir=str(output),
                init=str(init),
                steps=steps,
                seed=seed,
                ontology=str(corpus / "ontology.json"),
                eval_every=steps,
                save_every=steps,
                progress=False,
                **DEFAULT_TRAINING,
                **extra,
            )
        )
    return output


def unfiltered_round(work: Path, corpus: Path, model: Path, name: str, tracks: str, round_index: int, seed: int, steps: int) -> Path:
    """One loop round without the filter: separate with ``model``, keep every track, train on all of them."""
    output = work / tracks
    build(BuildConfig(corpus=str(corpus), output_dir=output, model=str(model), thresholds=NO_FILTER, iteration=round_index),
          progress=False)
    return continue_training(work, name, model, [output], steps, seed + round_index, corpus, quality="off")


def run_seed(work: Path, seed: int, args) -> dict:
    corpus = work / "corpus"
    if not (corpus / "corpus.json").exists():
        generate_demo_corpus(corpus, clips=args.clips, seed=seed, single_event_fraction=args.single_event_fraction)
    loop_dir = work / "loop"
    results = run_loop(
        LoopConfig(corpus=str(corpus), output_dir=loop_dir, rounds=2, train_steps=args.train_steps,
                   round0_steps=args.round0_steps, seed=seed, progress=False)
    )
    round0 = loop_dir / "round-0"
    clean = [round0 / "tracks"]
    # A: the same clean clips, the loop's budget after round 0 (one and two rounds' worth).
    a1 = continue_training(work, "A1", round0 / "model", clean, args.train_steps, seed + 1, corpus)
    a2 = continue_training(work, "A2", a1, clean, args.train_steps, seed + 2, corpus)
    # C: the loop's two rounds with every separated track kept (no thresholds, no quality weighting).
    c1 = unfiltered_round(work, corpus, round0 / "model", "C1", "unfiltered-tracks", 1, seed, args.train_steps)
    c2 = unfiltered_round(work, corpus, c1, "C2", "unfiltered-tracks-2", 2, seed, args.train_steps)
    b1_natural = continue_training(work, "B1-natural", round0 / "model", [loop_dir / "round-1" / "tracks"],
                                   args.train_steps, seed + 1, corpus, natural_corpus=str(corpus))
    arms = {
        "A_round0": scores(round0 / "model", corpus),
        "A1_clean_only_round1_budget": scores(a1, corpus),
        "A2_clean_only_round2_budget": scores(a2, corpus),
        "B1_loop_round1": scores(loop_dir / "round-1" / "model", corpus),
        "B2_loop_round2": scores(loop_dir / "round-2" / "model", corpus),
        "B1_with_natural_mixtures": scores(b1_natural, corpus),
        "C1_unfiltered_round1": scores(c1, corpus),
        "C2_unfiltered_round2": scores(c2, corpus),
    }
    return {
        "seed": seed,
        "rounds": [{"round": r.round, "separated_accepted": r.separated_accepted, "separated_rejected": r.separated_rejected,
                    "mean_re_sdr_accepted": r.mean_re_sdr_accepted, "eval_si_sdri": r.eval_si_sdri} for r in results],
        "arms": arms,
        "oracle_si_sdri": arms["A_round0"]["oracle_si_sdri"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--single-event-fraction", type=float, default=SINGLE_EVENT_FRACTION,
                        help="Share of clean single-event training clips; lower it to make clean data scarce.")
    parser.add_argument("--round0-steps", type=int, default=400)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--work-dir", type=Path, default=None, help="Keep the runs here (reruns resume).")
    args = parser.parse_args()
    work_root = args.work_dir or Path(mkdtemp(prefix="loop-gain-"))
    runs = [run_seed(work_root / f"seed-{seed}", seed, args) for seed in args.seeds]
    arms = runs[0]["arms"].keys()
    mean = {arm: sum(run["arms"][arm]["si_sdri"] for run in runs) / len(runs) for arm in arms}
    per_class = {
        arm: {name: sum(run["arms"][arm]["per_class"][name] for run in runs) / len(runs) for name in runs[0]["arms"][arm]["per_class"]}
        for arm in arms
    }
    print(json.dumps({
        "settings": vars(args) | {"work_dir": str(work_root)},
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "mean_si_sdri": mean,
        "mean_oracle_si_sdri": sum(run["oracle_si_sdri"] for run in runs) / len(runs),
        "per_class_si_sdri": per_class,
        "claims": {
            "B1 > A1": mean["B1_loop_round1"] > mean["A1_clean_only_round1_budget"],
            "B2 > A2": mean["B2_loop_round2"] > mean["A2_clean_only_round2_budget"],
            "B1 >= C1": mean["B1_loop_round1"] >= mean["C1_unfiltered_round1"],
            "B2 >= C2": mean["B2_loop_round2"] >= mean["C2_unfiltered_round2"],
        },
        "runs": runs,
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
