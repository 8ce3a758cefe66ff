"""The learned quality score: the shipped predictor, fitting, the engine's threshold on it, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clearsep_data.filtering import Thresholds
from clearsep_data.loop import LoopConfig
from clearsep_data.quality import TrackScores, assess
from clearsep_data.quality_predictor import DEFAULT_PATH, FEATURES, QualityPredictor, QualityPredictorError, track_features

CLEAN = {"re_sdr": 18.0, "re_sisdr": 17.0, "energy_ratio": -3.0, "consistency_sisdr": 25.0, "leakage_db": -35.0}
SWALLOWED = {"re_sdr": 18.0, "re_sisdr": 17.0, "energy_ratio": -0.5, "consistency_sisdr": 4.0, "leakage_db": -3.0}


def test_shipped_predictor_ranks_a_clean_track_above_one_that_swallowed_another_event():
    predictor = QualityPredictor.load()
    assert predictor.features == list(FEATURES)
    assert predictor.provenance["cross_validated_spearman"] >= 0.75  # on the real-sound benchmark (benchmarks/README.md)
    clean, swallowed = predictor.predict_table({name: [CLEAN[name], SWALLOWED[name]] for name in FEATURES})
    assert clean > 10 > swallowed


def test_features_are_clipped_and_a_missing_leakage_counts_as_none():
    columns = {name: [value] for name, value in CLEAN.items()} | {"energy_ratio": [-200.0], "leakage_db": [None]}
    row = track_features(columns)[0]
    assert row[FEATURES.index("energy_ratio")] == -60.0 and row[FEATURES.index("leakage_db")] == -60.0


def test_fit_recovers_a_linear_quality_and_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.uniform(-10, 10, size=(200, len(FEATURES)))
    target = 2.0 * features[:, 3] - 0.5 * features[:, 4] + 3.0
    predictor = QualityPredictor.fit(features, target, alpha=1e-6, provenance={"fitted_on": "synthetic"})
    np.testing.assert_allclose(predictor.predict(features), target, atol=1e-3)
    path = tmp_path / "predictor.json"
    path.write_text(predictor.to_json())
    assert QualityPredictor.load(path) == predictor


def test_assess_adds_the_prediction_of_its_own_fields():
    torch.manual_seed(0)
    tracks = torch.randn(2, 1600)
    mixture = tracks.sum(0) + 0.01 * torch.randn(1600)
    reseparated = torch.stack([torch.stack([tracks[0], 0.1 * tracks[1]]), torch.stack([0.1 * tracks[0], tracks[1]])])
    predictor = QualityPredictor.load()
    scores = assess(mixture, tracks, reseparated, predictor)
    expected = predictor.predict_table({name: [getattr(score, name) for score in scores] for name in FEATURES})
    assert [score.predicted_si_sdr for score in scores] == pytest.approx(expected.tolist())
    assert assess(mixture, tracks, reseparated)[0].predicted_si_sdr is None


def test_threshold_on_the_prediction_rejects_and_tightens_per_round():
    thresholds = Thresholds(min_predicted_si_sdr=5.0)
    good = TrackScores(**CLEAN, predicted_si_sdr=12.0)
    poor = TrackScores(**CLEAN, predicted_si_sdr=3.0)
    assert thresholds.judge([good, poor]) == ["", "predicted_si_sdr 3.0 < 5"]
    assert Thresholds().judge([poor]) == [""]  # off by default
    loop = LoopConfig(corpus="c", output_dir=None, thresholds=thresholds)
    assert loop.round_thresholds(2).min_predicted_si_sdr == 6.0
    assert loop.round_thresholds(2).min_re_sdr == thresholds.min_re_sdr + 1
    assert json.loads(thresholds.to_json())["min_predicted_si_sdr"] == 5.0
    assert "min_predicted_si_sdr" not in Thresholds().to_dict()  # off: the fingerprint of earlier builds


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "cannot read a quality predictor"), (json.dumps({"mean": []}), "cannot read a quality predictor")],
)
def test_unusable_predictor_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(QualityPredictorError, match=f"{path}: {message}"):
        QualityPredictor.load(path)


def test_predictor_over_other_features_is_refused(tmp_path):
    data = json.loads(DEFAULT_PATH.read_text())
    data["features"] = ["re_sdr"]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    with pytest.raises(QualityPredictorError, match=f"{path}: expects features"):
        QualityPredictor.load(path)
