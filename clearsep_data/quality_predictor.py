"""A learned reference-free quality score: the SI-SDR a separated track is predicted to have against its (unknown)
reference, from the fields the engine stores with it.

A ridge regression over the engine's quality fields (:mod:`clearsep_data.quality`), each clipped to a sane range.
Fitted by
``benchmarks/quality_vs_truth.py --fit`` on tracks whose true SI-SDR is known (a corpus with references), and shipped
as ``clearsep_data/data/quality_predictor.json``; the engine writes its output as ``predicted_si_sdr`` and
``Thresholds.min_predicted_si_sdr`` can filter on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clearsep_data.errors import ClearSepError

FEATURE_RANGES: dict[str, tuple[float, float]] = {
    "re_sdr": (-20.0, 40.0),
    "re_sisdr": (-20.0, 40.0),
    "energy_ratio": (-60.0, 0.0),
    "consistency_sisdr": (-20.0, 40.0),
    "leakage_db": (-60.0, 10.0),
}
"""The features (the quality fields) and the range each is clipped to (dB): a near-silent track's -200 dB would
otherwise dominate a fit."""
FEATURES: tuple[str, ...] = tuple(FEATURE_RANGES)
DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "quality_predictor.json"


class QualityPredictorError(ClearSepError):
    """A quality predictor file that cannot be used."""


def track_features(columns: Mapping[str, Sequence]) -> np.ndarray:
    """The ``(tracks, features)`` matrix of separated tracks given as columns of the track format (a missing
    value, a clip's one track without leakage, counts as the range's best end)."""
    low, high = np.array(list(FEATURE_RANGES.values())).T
    matrix = np.stack([np.array([np.nan if value is None else value for value in columns[name]], dtype=float) for name in FEATURES], axis=1)
    best = np.where(np.array(FEATURES) == "leakage_db", low, high)
    return np.clip(np.where(np.isnan(matrix), best, matrix), low, high)


@dataclass(frozen=True)
class QualityPredictor:
    """Ridge regression from :func:`track_features` to a track's true SI-SDR (dB)."""

    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    alpha: float
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    provenance: dict = field(default_factory=dict)
    """What it was fitted on and how well it ranked held-out clips (free-form, JSON-ready)."""

    @classmethod
    def fit(cls, features: np.ndarray, target: np.ndarray, alpha: float = 1.0, provenance: dict | None = None) -> QualityPredictor:
        """Closed-form ridge on standardised features (the intercept is not penalised)."""
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
        standard = (features - mean) / scale
        centre = float(target.mean())
        weights = np.linalg.solve(standard.T @ standard + alpha * np.eye(standard.shape[1]), standard.T @ (target - centre))
        return cls(mean.tolist(), scale.tolist(), weights.tolist(), centre, alpha, provenance=provenance or {})

    def predict(self, features: np.ndarray) -> np.ndarray:
        return ((features - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.coefficients) + self.intercept

    def predict_table(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """Predicted SI-SDR (dB) of each row of ``columns`` (see :func:`track_features`)."""
        return self.predict(track_features(columns))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def load(cls, path: str | Path | None = None) -> QualityPredictor:
        """A predictor file, by default the one shipped with the package."""
        source = Path(path) if path is not None else DEFAULT_PATH
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
            predictor = cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise QualityPredictorError(f"{source}: cannot read a quality predictor ({error})") from None
        if predictor.features != list(FEATURES) or not len(predictor.mean) == len(predictor.scale) == len(predictor.coefficients) == len(FEATURES):
            raise QualityPredictorError(f"{source}: expects features {list(FEATURES)}, the file has {predictor.features}")
        return predictor
