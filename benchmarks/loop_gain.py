"""Does the ClearSep loop improve separation? Prints one JSON object.

On a corpus with references (the demo corpus, generated per seed, or a given one such as the real-sound
benchmark's, ``--corpus``), with fixed seeds and the same training budget for every arm, scores on the
held-out ``eval`` split (SI-SDRi, mean and per class):

- ``A``: the artificial-mixture baseline: the round-0 model (clean single-event clips only),
  trained further on the same clean clips for as many steps as the loop spends after round 0;
- ``B1``, ``B2``: the loop's rounds 1 and 2: the engine's tracks, filtered (``--filter thresholds``: the
  loop's thresholds; ``--filter predicted``: the shipped quality predictor, ``predicted_si_sdr`` at least
  ``--min-predicted`` dB in round 1 and 1 dB more in round 2);
- ``B1 with natural mixtures``: round 1's training on the same tracks with a quarter of the examples natural
  mixtures (the original clip, its accepted tracks as targets): an ablation of that optional strategy
  (``--natural-ablation``);
- ``B1 without quality weighting``: round 1's training on B's filtered tracks at full weight, as C trains
  (``--quality-ablation``): which of the two, the filter or the weighting, moves B away from C;
- ``B1 with balanced classes``: round 1's training on B's tracks, each class as likely to be drawn whatever its number
  of tracks (``--balance-ablation``; ``train --balance-classes``);
- ``D1``: round 1's training on every separated track (C's), each track's loss weighted by its predicted SI-SDR
  (``--quality-score predicted_si_sdr``): the predictor as a soft filter (``--soft-filter``);
- ``C1``, ``C2``: the same two rounds with the engine's tracks *unfiltered* (every separated track, no
  quality weighting), to show whether the filter matters;
- ``A1``, ``A2``: the baseline at the round-1 and round-2 budgets (the fair comparisons for ``B`` and ``C``);
- ``oracle``: the ideal-ratio-mask ceiling.

Every arm trains with the loop's round settings (:func:`clearsep_data.loop.round_arguments`: the corpus's
``valid`` split scores and keeps the best checkpoint where there is one) and the same seed per round. Arms B and C
of round 1 share one engine build (each track is separated once; the filters are applied to its fields). With
``--round0-model`` every seed starts from that model (and shares its round-1 build); otherwise each seed trains
its own round 0. After each seed, the report so far is written to ``--work-dir``/``loop_gain.json``.

    python benchmarks/loop_gain.py --seeds 0 1 --clips 300 --round0-steps 400 --train-steps 200 --natural-ablation
    python benchmarks/loop_gain.py ... --single-event-fraction 0.1   # clean single-event clips scarce
    python benchmarks/loop_gain.py --corpus /tmp/real --round0-model /tmp/real-runs/baseline-seed0 --seeds 0 1 2 \\
        --train-steps 100 --filter predicted --work-dir /tmp/loop-real     # the real-sound benchmark
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from tempfile import mkdtemp

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _common import machine, stdout_to_stderr
from clearsep_data.build_folder import atomic_write_text
from clearsep_data.demo_corpus import SINGLE_EVENT_FRACTION, generate_demo_corpus
from clearsep_data.engine import BuildConfig, build
from clearsep_data.evaluation import evaluate_on_benchmark
from clearsep_data.loop import DEFAULT_TRAINING, LoopConfig, round_arguments, round_training
from clearsep_data.modeling import ClearSepModel
from clearsep_data.quality_predictor import QualityPredictor
from clearsep_data.tracks import ACCEPTED_SPLIT, DATA_DIR, ORIGIN_SEPARATED, REJECTED_SPLIT, local_shards, shard_name
from clearsep_data.training import train


def scores(model_dir: Path, corpus: Path, cache: Path | None = None) -> dict:
    """Held-out scores of a model, cached (by default next to it) so reruns only score new arms."""
    cache = cache or model_dir / "loop_gain_scores.json"
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


def train_round(config: LoopConfig, round_index: int, output: Path, datasets: list[Path], init: Path | None, **extra) -> Path:
    """One arm's round: the loop's round settings (seed ``seed + round``), on ``datasets``, from ``init``."""
    if not (output / "model.safetensors").exists():
        arguments = round_arguments(config, round_index, datasets[0], output, None if init is None else str(init))
        train(replace(arguments, datasets=[str(path) for path in datasets], **extra))
    return output


def engine_round(config: LoopConfig, round_index: int, model: Path, output: Path) -> Path:
    """Separate the corpus with ``model`` (the round's thresholds; rejected tracks kept, with their fields)."""
    build(BuildConfig(corpus=config.corpus, output_dir=output, model=str(model), thresholds=config.round_thresholds(round_index),
                      iteration=round_index), progress=False)
    return output


def refiltered(tracks: Path, output: Path, keep) -> Path:
    """A copy of the track dataset ``tracks`` whose accepted split holds its single-source tracks and the separated
    tracks (of either split) for which ``keep(table)`` is true; the others form its rejected split. Tracks built
    before ``predicted_si_sdr`` existed get it from the shipped predictor."""
    if (output / DATA_DIR).exists():
        return output
    table = pa.concat_tables([pq.read_table(shard) for split in (ACCEPTED_SPLIT, REJECTED_SPLIT) for shard in local_shards(tracks, split)])
    separated = np.asarray(table["origin"].to_numpy(zero_copy_only=False) == ORIGIN_SEPARATED)
    if "predicted_si_sdr" not in table.column_names:  # tracks built before the field: the shipped predictor's values
        predicted = QualityPredictor.load().predict_table(table.drop_columns(["audio"]).to_pydict())
        column = pa.array([float(value) if keep else None for value, keep in zip(predicted, separated)], pa.float32())
        table = table.add_column(table.schema.get_field_index("leakage_db") + 1, "predicted_si_sdr", column)
    accepted = ~separated | (separated & np.asarray(keep(table), dtype=bool))
    staging = output.with_name(output.name + ".partial")
    (staging / DATA_DIR).mkdir(parents=True, exist_ok=True)
    for split, mask in ((ACCEPTED_SPLIT, accepted), (REJECTED_SPLIT, ~accepted)):
        pq.write_table(table.filter(pa.array(mask)), staging / DATA_DIR / shard_name(split, 0, 1))
    staging.rename(output)
    return output


def keep_all(table: pa.Table) -> np.ndarray:
    return np.ones(table.num_rows, dtype=bool)


def keep_predicted(predictor: QualityPredictor, minimum: float):
    """``keep`` for :func:`refiltered`: the track's predicted SI-SDR (from its stored fields) is at least ``minimum``."""
    def keep(table: pa.Table) -> np.ndarray:
        return predictor.predict_table(table.drop_columns(["audio"]).to_pydict()) >= minimum
    return keep


def filtered(args, config: LoopConfig, round_index: int, tracks: Path) -> Path:
    """Arm B's dataset of a round: the engine's own split, or the tracks the predictor's threshold accepts."""
    if args.filter == "thresholds":
        return tracks
    minimum = args.min_predicted + config.threshold_step * (round_index - 1)
    return refiltered(tracks, tracks.with_name(tracks.name + "-predicted"), keep_predicted(QualityPredictor.load(), minimum))


def separated_counts(tracks: Path) -> dict:
    return {split: sum(pq.read_table(shard, columns=["origin"])["origin"].to_pylist().count(ORIGIN_SEPARATED)
                       for shard in local_shards(tracks, split)) for split in (ACCEPTED_SPLIT, REJECTED_SPLIT)}


def run_seed(work_root: Path, seed: int, args) -> dict:
    work = work_root / f"seed-{seed}"
    shared = work_root if args.round0_model else work  # what depends on the round-0 model alone
    corpus = args.corpus or work / "corpus"
    if args.corpus is None and not (corpus / "corpus.json").exists():
        generate_demo_corpus(corpus, clips=args.clips, seed=seed, single_event_fraction=args.single_event_fraction)
    config = LoopConfig(corpus=str(corpus), output_dir=work, train_steps=args.train_steps, round0_steps=args.round0_steps,
                        seed=seed, progress=False, training=round_training(lr=args.lr))
    clean = shared / "round-0-tracks"
    build(BuildConfig(corpus=str(corpus), output_dir=clean), progress=False)
    round0 = args.round0_model or train_round(config, 0, work / "round-0-model", [clean], None)
    round1 = engine_round(config, 1, round0, shared / "round-1-tracks")
    # A: the same clean clips, the loop's budget after round 0 (one and two rounds' worth).
    a1 = train_round(config, 1, work / "A1", [clean], round0)
    # B: the loop, filtered.
    b1_tracks = filtered(args, config, 1, round1)
    b1 = train_round(config, 1, work / "B1", [b1_tracks], round0)
    # C: the loop with every separated track kept (no thresholds, no quality weighting).
    c1_tracks = refiltered(round1, shared / "round-1-tracks-all", keep_all)
    c1 = train_round(config, 1, work / "C1", [c1_tracks], round0, quality="off")
    arms = {
        "A_round0": scores(round0, corpus, shared / "round-0-scores.json"),
        "A1_clean_only_round1_budget": scores(a1, corpus),
        "B1_loop_round1": scores(b1, corpus),
        "C1_unfiltered_round1": scores(c1, corpus),
    }
    separated = {"B1": separated_counts(b1_tracks), "C1": separated_counts(c1_tracks)}
    if args.rounds == 2:
        a2 = train_round(config, 2, work / "A2", [clean], a1)
        b2_tracks = filtered(args, config, 2, engine_round(config, 2, b1, work / "B2-tracks"))
        b2 = train_round(config, 2, work / "B2", [b2_tracks], b1)
        c2_tracks = refiltered(engine_round(config, 2, c1, work / "C2-tracks"), work / "C2-tracks-all", keep_all)
        c2 = train_round(config, 2, work / "C2", [c2_tracks], c1, quality="off")
        arms |= {"A2_clean_only_round2_budget": scores(a2, corpus), "B2_loop_round2": scores(b2, corpus),
                 "C2_unfiltered_round2": scores(c2, corpus)}
        separated |= {"B2": separated_counts(b2_tracks), "C2": separated_counts(c2_tracks)}
    if args.natural_ablation:
        natural = train_round(config, 1, work / "B1-natural", [b1_tracks], round0, natural_corpus=str(corpus), natural_rate=0.25)
        arms["B1_with_natural_mixtures"] = scores(natural, corpus)
    if args.quality_ablation:
        unweighted = train_round(config, 1, work / "B1-quality-off", [b1_tracks], round0, quality="off")
        arms["B1_without_quality_weighting"] = scores(unweighted, corpus)
    if args.balance_ablation:
        balanced = train_round(config, 1, work / "B1-balanced", [b1_tracks], round0, balance_classes=True)
        arms["B1_with_balanced_classes"] = scores(balanced, corpus)
    if args.soft_filter:
        scored = refiltered(round1, shared / "round-1-tracks-all-scored", keep_all)  # C's tracks, with predictions
        soft = train_round(config, 1, work / "D1", [scored], round0, quality="weight", quality_score="predicted_si_sdr")
        arms["D1_every_track_weighted_by_prediction"] = scores(soft, corpus)
    return {
        "seed": seed,
        "separated_tracks": separated,
        "arms": arms,
        "oracle_si_sdri": arms["A_round0"]["oracle_si_sdri"],
    }


def report(args, work_root: Path, runs: list[dict], started: dict) -> dict:
    """The JSON report over the seeds run so far."""
    arms = runs[0]["arms"].keys()
    mean = {arm: sum(run["arms"][arm]["si_sdri"] for run in runs) / len(runs) for arm in arms}
    per_class = {
        arm: {name: sum(run["arms"][arm]["per_class"][name] for run in runs) / len(runs) for name in runs[0]["arms"][arm]["per_class"]}
        for arm in arms
    }
    return {
        "command": shlex.join(["python", "benchmarks/loop_gain.py", *sys.argv[1:]]),
        "settings": vars(args) | {"work_dir": str(work_root)},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": started | {"load_average_end": list(os.getloadavg())},
        "seeds_done": [run["seed"] for run in runs],
        "mean_si_sdri": mean,
        "mean_oracle_si_sdri": sum(run["oracle_si_sdri"] for run in runs) / len(runs),
        "per_class_si_sdri": per_class,
        "gaps": {f"B{k} - {other}{k}": mean[f"B{k}_loop_round{k}"] - mean[arm]
                 for k in range(1, args.rounds + 1) for other, arm in (("A", f"A{k}_clean_only_round{k}_budget"),
                                                                        ("C", f"C{k}_unfiltered_round{k}"))},
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--corpus", type=Path, default=None, help="A corpus with references (default: a demo corpus per seed).")
    parser.add_argument("--round0-model", type=Path, default=None, help="Start every seed from this round-0 model.")
    parser.add_argument("--clips", type=int, default=300, help="Demo corpus: training clips.")
    parser.add_argument("--single-event-fraction", type=float, default=SINGLE_EVENT_FRACTION,
                        help="Demo corpus: share of clean single-event training clips; lower it to make clean data scarce.")
    parser.add_argument("--round0-steps", type=int, default=400)
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=DEFAULT_TRAINING["lr"], help="Peak learning rate of every round.")
    parser.add_argument("--filter", choices=("thresholds", "predicted"), default="thresholds", help="Arm B's filter.")
    parser.add_argument("--min-predicted", type=float, default=None, help="--filter predicted: round 1's threshold (dB).")
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2, help="Loop rounds after round 0 (arms A, B, C each).")
    parser.add_argument("--natural-ablation", action="store_true", help="Also train B1 with natural mixtures.")
    parser.add_argument("--quality-ablation", action="store_true",
                        help="Also train B1 without quality weighting (its filtered tracks, every one at full weight, as C's).")
    parser.add_argument("--balance-ablation", action="store_true",
                        help="Also train B1 drawing every class as often (train --balance-classes).")
    parser.add_argument("--soft-filter", action="store_true",
                        help="Also train D1: every separated track, weighted by its predicted SI-SDR.")
    parser.add_argument("--work-dir", type=Path, default=None, help="Keep the runs here (reruns resume).")
    args = parser.parse_args()
    if args.filter == "predicted" and args.min_predicted is None:
        parser.error("--filter predicted needs --min-predicted")
    if args.round0_model is not None and args.corpus is None:
        parser.error("--round0-model needs --corpus (the corpus it was trained for)")
    work_root = args.work_dir or Path(mkdtemp(prefix="loop-gain-"))
    started = machine()
    runs = []
    for seed in args.seeds:
        with stdout_to_stderr():  # the trainer's notes (e.g. "Resuming from ...") stay off the JSON
            runs.append(run_seed(work_root, seed, args))
        atomic_write_text(work_root / "loop_gain.json", json.dumps(report(args, work_root, runs, started), indent=2, default=str))
    print(json.dumps(report(args, work_root, runs, started), indent=2, default=str))


if __name__ == "__main__":
    main()
