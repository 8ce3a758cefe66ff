"""How well do the engine's reference-free quality scores predict the true quality of a track?

Reads an engine output (with its rejected split) built from a corpus with references (the demo corpus, or the
real-sound benchmark's, whose training clips keep their references), which the engine never scores against,
and prints one JSON object: the Spearman rank correlation with every separated track's true SI-SDR (against the
reference of its event) of each candidate score:

- each stored quality field;
- ``residual_attributed_db``: the remix residual (clip minus the sum of its tracks) attributed to the tracks in
  proportion to their energy in each time-frequency bin, as a track-to-residual ratio;
- ``z_sum``: an unfitted combination, the sum of the z-scores of ``energy_ratio``, ``consistency_sisdr`` and
  ``-leakage_db``;
- ``predicted_si_sdr (cross-validated)``: the ridge predictor of :mod:`clearsep_data.quality_predictor`, fitted
  and scored with clip-grouped 5-fold cross-validation (a clip's tracks are never on both sides), and the same
  ridge with ``residual_attributed_db`` as a sixth feature (not shipped: the engine does not store it);
- ``predicted_si_sdr (shipped)``: the predictor shipped with the package, as is.

It also gives the true SI-SDR of the tracks each filter keeps: the thresholds the tracks were built with, the
same number of tracks ranked by each score, and thresholds on the predicted SI-SDR. ``--fit FILE`` writes the predictor fitted on all the tracks (with its
cross-validated scores as provenance), the file the package ships.

    python benchmarks/quality_vs_truth.py LOOP/round-1/tracks CORPUS [--fit clearsep_data/data/quality_predictor.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from datasets import Audio

from clearsep_data.audio import decode_flac, load_audio
from clearsep_data.metrics import si_sdr
from clearsep_data.ontology import mid_slug
from clearsep_data.quality_predictor import DEFAULT_PATH, FEATURES, QualityPredictor, track_features
from clearsep_data.tracks import ACCEPTED_SPLIT, ORIGIN_SEPARATED, REJECTED_SPLIT, load_tracks

FOLDS = 5
THRESHOLDS = (0.0, 2.0, 4.0, 5.0, 6.0, 8.0, 10.0)
"""Thresholds on the predicted SI-SDR whose kept tracks are reported."""
STFT = {"n_fft": 512, "hop_length": 128}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (no ties expected in continuous scores)."""
    rank_x, rank_y = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def residual_attributed_db(mixture: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """Per track (Q, T): its energy over its share of the remix residual, each bin's residual energy split among the
    tracks in proportion to their energy there (dB)."""
    window = torch.hann_window(STFT["n_fft"], dtype=tracks.dtype)
    spectrum = lambda signal: torch.stft(signal, **STFT, window=window, return_complex=True)  # noqa: E731
    power = spectrum(tracks).abs() ** 2
    share = power / (power.sum(0, keepdim=True) + 1e-12)
    residual = (spectrum(mixture - tracks.sum(0)).abs() ** 2).unsqueeze(0) * share
    return 10 * torch.log10((power.sum((1, 2)) + 1e-12) / (residual.sum((1, 2)) + 1e-12))


def read_tracks(tracks: Path, corpus: Path) -> dict[str, list]:
    """Every separated track of both splits as columns: its stored fields, whether it was accepted, the attributed
    residual and its true SI-SDR."""
    clips: dict[tuple, list[dict]] = defaultdict(list)
    for split in (ACCEPTED_SPLIT, REJECTED_SPLIT):
        for row in load_tracks(tracks, split).cast_column("audio", Audio(decode=False)):
            if row["origin"] == ORIGIN_SEPARATED:
                clips[row["clip_id"], row["start_seconds"]].append(row | {"accepted": split == ACCEPTED_SPLIT})
    columns: dict[str, list] = defaultdict(list)
    for (clip_id, _), rows in clips.items():
        waveforms = [decode_flac(row["audio"]["bytes"]) for row in rows]
        rate = waveforms[0][1]
        mixture = load_audio(corpus / "audio" / f"{clip_id}.flac", rate)
        length = min(mixture.size, *(waveform.size for waveform, _ in waveforms))
        separated = torch.from_numpy(np.stack([waveform[:length] for waveform, _ in waveforms])).double()
        attributed = residual_attributed_db(torch.from_numpy(mixture[:length]).double(), separated)
        for row, track, residual in zip(rows, separated, attributed):
            reference = load_audio(corpus / "references" / clip_id / f"{mid_slug(row['label'])}.flac", rate)
            size = min(reference.size, length)
            for name in (*FEATURES, "clip_id", "start_seconds", "label_name", "accepted"):
                columns[name].append(row[name])
            columns["residual_attributed_db"].append(float(residual))
            columns["true_si_sdr"].append(float(si_sdr(torch.from_numpy(reference[:size]).double(), track[:size])))
    return columns


def clip_folds(columns: dict[str, list], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold of each track: whole clips assigned at random, so that no clip is split across folds."""
    clips = sorted(set(zip(columns["clip_id"], columns["start_seconds"])))
    order = np.random.default_rng(seed).permutation(len(clips)) % folds
    fold = dict(zip(clips, order))
    return np.array([fold[clip] for clip in zip(columns["clip_id"], columns["start_seconds"])])


def cross_validated(features: np.ndarray, target: np.ndarray, folds: np.ndarray, alpha: float) -> np.ndarray:
    """Out-of-fold predictions of the ridge predictor."""
    predicted = np.empty_like(target)
    for fold in np.unique(folds):
        held_out = folds == fold
        predicted[held_out] = QualityPredictor.fit(features[~held_out], target[~held_out], alpha).predict(features[held_out])
    return predicted


def zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-12)


def summary(values: np.ndarray) -> dict:
    return {"count": int(values.size), "mean": float(values.mean()), "median": float(np.median(values))} if values.size else {"count": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", type=Path, help="Engine output folder (with a rejected split).")
    parser.add_argument("corpus", type=Path, help="The corpus it was built from (with references of its training clips).")
    parser.add_argument("--alpha", type=float, default=1.0, help="Ridge penalty on the standardised features.")
    parser.add_argument("--fit", type=Path, default=None, help="Write the predictor fitted on all the tracks here.")
    args = parser.parse_args()
    columns = read_tracks(args.tracks, args.corpus)
    truth = np.array(columns["true_si_sdr"])
    accepted = np.array(columns["accepted"])
    features = track_features(columns)
    folds = clip_folds(columns)
    fields = {name: np.array(columns[name], dtype=float) for name in (*FEATURES, "residual_attributed_db")}
    fields["-leakage_db"] = -fields.pop("leakage_db")
    index = {name: position for position, name in enumerate(FEATURES)}
    candidates = dict(fields)
    candidates["z_sum"] = sum(zscore(features[:, index[name]]) * sign for name, sign in
                              (("energy_ratio", 1), ("consistency_sisdr", 1), ("leakage_db", -1)))
    candidates["predicted_si_sdr (cross-validated)"] = cross_validated(features, truth, folds, args.alpha)
    with_residual = np.column_stack([features, fields["residual_attributed_db"]])
    candidates["predicted_si_sdr with residual_attributed_db (cross-validated)"] = cross_validated(with_residual, truth, folds, args.alpha)
    if DEFAULT_PATH.exists():
        candidates["predicted_si_sdr (shipped)"] = QualityPredictor.load().predict(features)
    kept = int(accepted.sum())
    top = {name: summary(truth[np.argsort(-score)[:kept]]) for name, score in candidates.items()}
    fold_spearman = [spearman(candidates["predicted_si_sdr (cross-validated)"][folds == fold], truth[folds == fold])
                     for fold in range(FOLDS)]
    result = {
        "command": shlex.join(["python", "benchmarks/quality_vs_truth.py", *sys.argv[1:]]),
        "tracks": args.tracks.as_posix(),
        "separated_tracks": int(truth.size),
        "clips": len(set(zip(columns["clip_id"], columns["start_seconds"]))),
        "spearman_with_true_si_sdr": {name: spearman(score, truth) for name, score in candidates.items()},
        "predicted_si_sdr_spearman_per_fold": fold_spearman,
        "true_si_sdr_accepted": summary(truth[accepted]),
        "true_si_sdr_rejected": summary(truth[~accepted]),
        "true_si_sdr_of_the_top_tracks_by_score": {"tracks": kept} | top,
        "true_si_sdr_kept_by_min_predicted_si_sdr (cross-validated)": {
            f"{minimum:g}": summary(truth[candidates["predicted_si_sdr (cross-validated)"] >= minimum]) for minimum in THRESHOLDS},
        "accepted_per_class": dict(sorted(Counter(np.array(columns["label_name"])[accepted]).items())),
        "rejected_per_class": dict(sorted(Counter(np.array(columns["label_name"])[~accepted]).items())),
    }
    if args.fit is not None:
        provenance = {"fitted_on": {"tracks": args.tracks.as_posix(), "corpus": args.corpus.as_posix(), "separated_tracks": int(truth.size)},
                      "cross_validated_spearman": result["spearman_with_true_si_sdr"]["predicted_si_sdr (cross-validated)"],
                      "command": result["command"]}
        predictor = QualityPredictor.fit(features, truth, args.alpha, provenance)
        args.fit.write_text(predictor.to_json() + "\n")
        result["fitted"] = {"file": args.fit.as_posix(), "coefficients": dict(zip(predictor.features, predictor.coefficients)),
                            "in_sample_spearman": spearman(predictor.predict(features), truth)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
