"""The ClearSep loop: separate natural clips, keep the clean tracks, retrain, and again.

Round 0 trains a model on the corpus's clean single-event clips (artificially re-mixed). Each
round ``k >= 1`` runs the engine over the corpus with the round ``k - 1`` model and that round's
thresholds, then trains the next model, initialised from the previous one, on the round's dataset:
the clean clips plus every separated track the better model and stricter thresholds accepted.
Every stage leaves its result under ``OUT/round-k/`` (``tracks/``, ``model/``, ``eval.json``) and
is skipped when rerun, so a killed loop resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from clearsep_data.corpus import open_corpus
from clearsep_data.distributed import distributed_state
from clearsep_data.engine import BuildConfig, BuildSummary, build
from clearsep_data.filtering import Thresholds
from clearsep_data.tracks import ACCEPTED_SPLIT, ORIGIN_SEPARATED, ORIGIN_SINGLE_SOURCE
from clearsep_data.build_folder import atomic_write_text
from clearsep_data.training.arguments import TrainingArguments

SUMMARY_FILE = "summary.json"
DEFAULT_TRAINING = {"segment_seconds": 2.0, "lr": 3e-3}
"""Where every round's training differs from ``train``'s defaults (4 s, 1e-3): the loop's rounds are short and on the
small preset, for which 2 s crops beat 4 s at equal compute on the demo corpus and a higher peak rate helps."""
PLOT_FILE = "rounds.png"
VALID_SPLIT = "valid"
"""A corpus split with references that rounds score their training on, when the corpus has one (``benchmarks/realsound.py
--valid-clips``); else each round scores mixtures of its held-out tracks."""


ROUND_DATASETS = ["<the round's tracks>"]
ROUND_OUTPUT = "<the round's model>"


def round_training(**settings) -> TrainingArguments:
    """The training template of the loop's rounds: :data:`DEFAULT_TRAINING` and ``settings`` (any
    ``TrainingArguments`` field) over ``train``'s defaults; datasets and output_dir are placeholders set per round."""
    return TrainingArguments(datasets=ROUND_DATASETS, output_dir=ROUND_OUTPUT, **{**DEFAULT_TRAINING, **settings})


@dataclass
class LoopConfig:
    """Settings of ``clearsep-data iterate``."""

    corpus: str
    output_dir: Path
    rounds: int = 2
    """Rounds after round 0 (so ``rounds + 1`` models are trained)."""
    train_steps: int = 200
    """Training steps of each round after round 0 (continued from the previous model)."""
    round0_steps: int | None = 400
    """Training steps of round 0 (a new model); ``None``: ``train_steps``."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    """Thresholds of round 1."""
    threshold_step: float = 1.0
    """dB by which each later round tightens the quality thresholds."""
    eval_split: str = "eval"
    """Held-out split with references (``{split}_segments.csv`` + ``references/manifest.csv``); evaluated if present."""
    natural_rate: float = 0.0
    """Share of natural-mixture examples in rounds ``k >= 1``: an original clip whose targets are its accepted
    tracks. Off by default: these targets are the previous model's own output on that very clip, and on the
    demo corpus they lowered round 1's held-out SI-SDRi by up to 1.8 dB (``benchmarks/README.md``)."""
    training: TrainingArguments = field(default_factory=round_training)
    """Template of every round's training (:func:`round_training`); each round copies it with its own datasets,
    output, init, steps and seed (``dataclasses.replace``)."""
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if not isinstance(self.training, TrainingArguments):
            raise TypeError(f"LoopConfig.training is a TrainingArguments template (round_training(...)), not {type(self.training).__name__}")

    def round_dir(self, round_index: int) -> Path:
        return self.output_dir / f"round-{round_index}"

    def round_thresholds(self, round_index: int) -> Thresholds:
        """The schedule: round 1 uses ``thresholds``; each later round is ``threshold_step`` dB stricter."""
        tighten = self.threshold_step * max(round_index - 1, 0)
        base = self.thresholds
        return replace(
            base,
            min_re_sdr=base.min_re_sdr + tighten,
            min_re_sisdr=base.min_re_sisdr + tighten,
            min_consistency_sisdr=base.min_consistency_sisdr + tighten,
            max_leakage_db=base.max_leakage_db - tighten,
            min_predicted_si_sdr=None if base.min_predicted_si_sdr is None else base.min_predicted_si_sdr + tighten,
        )


@dataclass
class RoundResult:
    """One row of the loop's summary."""

    round: int
    thresholds: dict | None
    single_source_tracks: int
    separated_accepted: int
    separated_rejected: int
    mean_re_sdr_accepted: float | None
    eval_si_sdri: float | None
    eval_sdri: float | None
    model: str
    tracks: str


def run_loop(config: LoopConfig, on_round=None) -> list[RoundResult]:
    """Run (or resume) every round; ``on_round(result)`` is called as each round completes."""
    open_corpus(config.corpus)  # a corpus that cannot be read fails here, before anything is written
    for round_index in range(min(config.rounds, 1) + 1):  # and so do training settings that cannot be trained with
        round_arguments(config, round_index, Path(), Path(), None if round_index == 0 else "previous").validate()
    config.output_dir.mkdir(parents=True, exist_ok=True)
    results: list[RoundResult] = []
    for round_index in range(config.rounds + 1):
        result = run_round(config, round_index)
        results.append(result)
        if distributed_state().is_main_process:
            write_summary(config, results)
            if on_round is not None:
                on_round(result)
    return results


def run_round(config: LoopConfig, round_index: int) -> RoundResult:
    """Engine, training and evaluation of one round; each step is skipped if already complete."""
    directory = config.round_dir(round_index)
    previous_model = None if round_index == 0 else str(config.round_dir(round_index - 1) / "model")
    thresholds = config.round_thresholds(round_index)
    summary = build(
        BuildConfig(
            corpus=config.corpus,
            output_dir=directory / "tracks",
            model=previous_model,
            thresholds=thresholds,
            iteration=round_index,
        ),
        progress=config.progress,
    )
    model_dir = directory / "model"
    if not (model_dir / "model.safetensors").exists():
        train_round(config, round_index, directory / "tracks", model_dir, previous_model)
    evaluation = evaluate_round(config, model_dir, directory / "eval.json")
    return round_result(round_index, directory, summary, None if round_index == 0 else thresholds, evaluation)


def round_arguments(config: LoopConfig, round_index: int, tracks: Path, model_dir: Path, init: str | None) -> TrainingArguments:
    """The template ``config.training`` copied for one round."""
    corpus = Path(config.corpus)
    steps = config.round0_steps if round_index == 0 and config.round0_steps else config.train_steps
    options = dict(
        datasets=[str(tracks)],
        output_dir=str(model_dir),
        init=init,
        steps=steps,
        seed=config.seed + round_index,
        progress=config.progress,
        eval_every=max(steps // 4, 1),
        save_every=max(steps // 4, 1),
    )
    if (corpus / "class_labels_indices.csv").exists():
        options["vocabulary"] = str(corpus / "class_labels_indices.csv")
    if (corpus / "ontology.json").exists():
        options["ontology"] = str(corpus / "ontology.json")
    elif corpus.is_dir() and any(corpus.glob("*segments*.csv")):  # an AudioSet folder falls back to the shipped ontology
        options["ontology"] = "audioset"
    if (corpus / f"{VALID_SPLIT}_segments.csv").exists():  # score training on real mixtures of held-out recordings
        options.update(eval_benchmark=config.corpus, eval_split=VALID_SPLIT)
    if round_index > 0 and config.natural_rate > 0:
        options.update(natural_corpus=config.corpus, natural_rate=config.natural_rate)
    if init is not None:  # the architecture comes from the previous round's model
        options.update(model_config={}, preset=TrainingArguments.__dataclass_fields__["preset"].default)
    return replace(config.training, **options)


def train_round(config: LoopConfig, round_index: int, tracks: Path, model_dir: Path, init: str | None) -> None:
    from clearsep_data.training import train

    train(round_arguments(config, round_index, tracks, model_dir, init))


def evaluate_round(config: LoopConfig, model_dir: Path, output: Path) -> dict | None:
    """Held-out SI-SDRi of the round's model, or ``None`` when the corpus has no references.

    The result is also copied into the model folder, where ``push model`` puts it in the model card. Under a
    distributed launch the main process evaluates and the others read its ``eval.json``.
    """
    from clearsep_data.benchmark_folder import BenchmarkError
    from clearsep_data.evaluation import EVAL_FILE, evaluate_on_benchmark
    from clearsep_data.modeling import ClearSepModel

    state = distributed_state()
    if state.is_main_process and not output.exists():
        try:
            evaluate_on_benchmark(ClearSepModel.from_pretrained(model_dir).eval(), config.corpus, split=config.eval_split).save(output)
        except BenchmarkError:
            pass
    if state.is_main_process and output.exists() and not (model_dir / EVAL_FILE).exists():
        shutil.copyfile(output, model_dir / EVAL_FILE)  # where `push model` finds it for the model card
    state.wait_for_everyone()
    return json.loads(output.read_text()) if output.exists() else None


def round_result(
    round_index: int, directory: Path, summary: BuildSummary, thresholds: Thresholds | None, evaluation: dict | None
) -> RoundResult:
    """The round's row, from the summary its build returned and its evaluation."""
    origins = summary.tracks_per_origin
    metrics = (evaluation or {}).get("metrics") or {}
    return RoundResult(
        round=round_index,
        thresholds=None if thresholds is None else asdict(thresholds),
        single_source_tracks=origins.get(ACCEPTED_SPLIT, {}).get(ORIGIN_SINGLE_SOURCE, 0),
        separated_accepted=origins.get(ACCEPTED_SPLIT, {}).get(ORIGIN_SEPARATED, 0),
        separated_rejected=summary.rejected_tracks,
        mean_re_sdr_accepted=summary.mean_re_sdr_accepted,
        eval_si_sdri=metrics.get("si_sdri"),
        eval_sdri=metrics.get("sdri"),
        model=str(directory / "model"),
        tracks=str(directory / "tracks"),
    )


def write_summary(config: LoopConfig, results: list[RoundResult]) -> None:
    """``summary.json`` and a plot of the metrics per round."""
    atomic_write_text(config.output_dir / SUMMARY_FILE, json.dumps([asdict(result) for result in results], indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [result.round for result in results]
    figure, (quality, counts) = plt.subplots(1, 2, figsize=(9, 3.5))
    quality.plot(rounds, [result.eval_si_sdri for result in results], marker="o", label="held-out SI-SDRi")
    quality.plot(rounds, [result.mean_re_sdr_accepted for result in results], marker="s", label="mean Re-SDR (accepted)")
    quality.set_xlabel("round")
    quality.set_ylabel("dB")
    quality.legend()
    counts.bar(rounds, [result.separated_accepted for result in results], label="separated, accepted")
    counts.bar(rounds, [result.single_source_tracks for result in results], bottom=[r.separated_accepted for r in results], label="single-source")
    counts.set_xlabel("round")
    counts.set_ylabel("tracks")
    counts.legend()
    for axis in (quality, counts):
        axis.set_xticks(rounds)
    figure.tight_layout()
    figure.savefig(config.output_dir / PLOT_FILE, dpi=100)
    plt.close(figure)
