"""Remix scores, per-track checks and thresholds, on hand-made signals."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clearsep_data.corpus import Clip
from clearsep_data.filtering import Thresholds, ThresholdsError
from clearsep_data.ontology import Ontology
from clearsep_data.metrics import energy_db, sdr, si_sdr
from clearsep_data.quality import QualitySums, TrackScores, assess
from clearsep_data.track_maker import TrackMaker

RATE = 8000
ONTOLOGY = Ontology.from_entries(
    [
        {"id": "/m/0jbk", "name": "Animal", "child_ids": ["/m/0bt9lr"]},
        {"id": "/m/0bt9lr", "name": "Dog", "child_ids": ["/m/05tny_"]},
        {"id": "/m/05tny_", "name": "Bark", "child_ids": []},
        {"id": "/m/09x0r", "name": "Speech", "child_ids": []},
        {"id": "/m/03kmc9", "name": "Siren", "child_ids": []},
    ]
)


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_remix_scores_match_hand_computed_values():
    a, b = torch.from_numpy(tone(300)), torch.from_numpy(tone(1100))
    mixture = a + b
    # Tracks at half amplitude remix to mixture / 2: SDR = 10 log10(|x|^2 / |x/2|^2) = 6.02 dB,
    # while the scale-invariant score is unaffected.
    tracks = torch.stack([a, b]) * 0.5
    scores = assess(mixture, tracks, torch.stack([torch.stack([tracks[0], 0 * a]), torch.stack([0 * b, tracks[1]])]))
    assert [track.re_sdr for track in scores] == pytest.approx([20 * math.log10(2)] * 2, abs=1e-3)
    assert min(track.re_sisdr for track in scores) > 60
    # Each half-amplitude tone holds a quarter of the energy of one tone, an eighth of the mixture's.
    expected_energy = 10 * math.log10((0.5**2 * a.pow(2).sum()) / mixture.pow(2).sum())
    assert [track.energy_ratio for track in scores] == pytest.approx([expected_energy] * 2, abs=1e-3)
    assert min(track.consistency_sisdr for track in scores) > 60  # re-separation returned each track unchanged
    assert max(track.leakage_db for track in scores) < -60  # and nothing for the other query


def test_leakage_is_the_loudest_other_query():
    tracks = torch.stack([torch.from_numpy(tone(f)) for f in (300, 700, 1500)])
    gains = torch.tensor([[1.0, 0.1, 0.01], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])  # [track, query]
    reseparated = gains[..., None] * tracks[:, None, :]
    leakage = [track.leakage_db for track in assess(tracks.sum(0), tracks, reseparated)]
    assert leakage[:2] == pytest.approx([20 * math.log10(0.1), 20 * math.log10(0.5)], abs=1e-3)
    assert leakage[2] < -70  # silence from both other queries


def test_scores_from_sums_are_the_metrics_of_the_whole_clip_whatever_the_windows():
    generator = torch.Generator().manual_seed(0)
    mixture = torch.randn(3 * RATE, generator=generator) * 0.3 + 0.01  # an offset: SI-SDR centres both signals
    tracks = torch.stack([mixture * 0.6, mixture * 0.3]) + torch.randn(2, 3 * RATE, generator=generator) * 0.02
    reseparated = tracks[:, None, :] * torch.tensor([[0.9, 0.05], [0.2, 1.1]])[..., None] + torch.randn(2, 2, 3 * RATE, generator=generator) * 0.01
    whole = assess(mixture, tracks, reseparated)
    own = reseparated.diagonal(dim1=0, dim2=1).T
    leakage = [float(energy_db(reseparated[0, 1], tracks[0])), float(energy_db(reseparated[1, 0], tracks[1]))]
    expected = zip(energy_db(tracks, mixture.expand_as(tracks)).tolist(), si_sdr(tracks, own).tolist(), leakage)
    for track, (energy, consistency, leak) in zip(whole, expected):
        assert track.re_sdr == pytest.approx(float(sdr(mixture, tracks.sum(0))), abs=1e-4)
        assert track.re_sisdr == pytest.approx(float(si_sdr(mixture, tracks.sum(0))), abs=1e-4)
        assert (track.energy_ratio, track.consistency_sisdr, track.leakage_db) == pytest.approx((energy, consistency, leak), abs=1e-4)
    sums = QualitySums()
    for window in (slice(0, 5000), slice(5000, 5001), slice(5001, 3 * RATE)):
        sums.add(mixture[window], tracks[:, window], reseparated[:, :, window])
    assert [tuple(vars(track).values()) for track in sums.scores()] == [pytest.approx(tuple(vars(track).values()), abs=1e-9) for track in whole]


def test_thresholds_from_json_and_toml(tmp_path: Path):
    (tmp_path / "t.json").write_text(json.dumps({"min_re_sdr": 12, "max_leakage_db": -15.5}))
    (tmp_path / "t.toml").write_text("min_re_sisdr = 8.0\n")
    assert Thresholds.from_file(tmp_path / "t.json") == Thresholds(min_re_sdr=12.0, max_leakage_db=-15.5)
    assert Thresholds.from_file(tmp_path / "t.toml").min_re_sisdr == 8.0
    (tmp_path / "bad.json").write_text(json.dumps({"min_re_sdr": 10, "min_snr": 3}))
    with pytest.raises(ThresholdsError, match=r"bad\.json: unknown threshold\(s\) \['min_snr'\]"):
        Thresholds.from_file(tmp_path / "bad.json")
    (tmp_path / "broken.toml").write_text("min_re_sdr = \n")
    with pytest.raises(ThresholdsError, match="broken.toml: cannot read thresholds"):
        Thresholds.from_file(tmp_path / "broken.toml")
    with pytest.raises(ThresholdsError, match="must be a number"):
        Thresholds().updated({"min_re_sdr": "high"})
    assert Thresholds().updated({"min_re_sdr": None}) == Thresholds()


def test_reject_reason_names_every_failed_check():
    thresholds = Thresholds()
    assert thresholds.reject_reason(20, 20, -3, 15, -30, quietest_in_clip=-6) == ""
    reason = thresholds.reject_reason(4.0, 20, -40, 2, -1, quietest_in_clip=-40)
    assert "re_sdr 4.0 < 10" in reason and "energy_ratio -40.0 < -30" in reason
    assert "consistency_sisdr 2.0 < 5" in reason and "leakage_db -1.0 > -10" in reason
    assert "near-silent" not in reason  # this track is itself the silent one
    assert "near-silent (-40.0 dB)" in thresholds.reject_reason(20, 20, 0, 15, -30, quietest_in_clip=-40)
    assert "re_sdr nan" in thresholds.reject_reason(float("nan"), 20, 0, 15, -30)


def test_judge_rejects_the_other_tracks_of_a_clip_with_a_silent_track():
    silent = TrackScores(re_sdr=20, re_sisdr=20, energy_ratio=-45, consistency_sisdr=15, leakage_db=-30)
    loud = TrackScores(re_sdr=20, re_sisdr=20, energy_ratio=-1, consistency_sisdr=15, leakage_db=-30)
    reasons = Thresholds().judge([silent, loud])
    assert reasons[0].startswith("energy_ratio -45.0 < -30") and "near-silent (-45.0 dB)" in reasons[1]
    assert Thresholds().judge([loud, loud]) == ["", ""]


class FakeSeparator:
    """A separator with ClearSepModel's `separate` signature and a scripted behaviour."""

    def __init__(self, behaviour):
        self.config = SimpleNamespace(label_mids=["/m/05tny_", "/m/09x0r", "/m/03kmc9"], sampling_rate=RATE)
        self.feature_extractor = SimpleNamespace(chunk_length=10 * RATE, chunk_context=0)  # clips fit one window
        self.behaviour = behaviour

    def separate(self, audio, queries, sampling_rate=None, return_tensors="np", **_):
        outputs = [self.behaviour(np.asarray(clip), list(q)) for clip, q in zip(audio, queries)]
        return [torch.from_numpy(output) for output in outputs] if return_tensors == "pt" else outputs


class OneClipCorpus:
    def __init__(self, waveform):
        self.waveform = waveform

    def load(self, clip, sampling_rate):
        return self.waveform


def make_clip(labels) -> Clip:
    return Clip(index=0, clip_id="abcdefghijk", start_seconds=30.0, end_seconds=31.0, labels=tuple(labels), audio="x.flac", where="segments.csv:4")


def run_maker(separator, labels, mixture):
    maker = TrackMaker(ONTOLOGY, separator, "fake@0")
    return maker(make_clip(labels), OneClipCorpus(mixture))


def test_one_track_takes_all_is_rejected_although_its_remix_is_perfect():
    bark, speech = tone(300), tone(1200)
    # The first query takes the whole input, the others get silence: the remix is perfect.
    greedy = lambda audio, queries: np.stack([audio] + [np.zeros_like(audio)] * (len(queries) - 1))
    accepted, rejected, skip = run_maker(FakeSeparator(greedy), ["/m/0bt9lr", "/m/05tny_", "/m/09x0r"], bark + speech)
    assert skip is None and accepted == []
    by_label = {row["label"]: row for row in rejected}
    assert set(by_label) == {"/m/05tny_", "/m/09x0r"}  # Dog is an ancestor of Bark: one query for both
    assert by_label["/m/05tny_"]["re_sdr"] > 60  # the remix alone would accept this clip
    assert "near-silent" in by_label["/m/05tny_"]["reject_reason"]
    assert "energy_ratio" in by_label["/m/09x0r"]["reject_reason"]


def test_a_clean_separation_is_accepted_with_its_scores():
    bark, speech = tone(300), tone(1200)

    def oracle(audio, queries):  # separates by frequency, like a perfect model would
        spectrum = np.fft.rfft(audio)
        freqs = np.fft.rfftfreq(audio.size, 1 / RATE)
        low = np.fft.irfft(np.where(freqs < 700, spectrum, 0), n=audio.size)
        return np.stack([low if q == "/m/05tny_" else audio - low for q in queries]).astype(np.float32)

    accepted, rejected, skip = run_maker(FakeSeparator(oracle), ["/m/05tny_", "/m/09x0r"], bark + speech)
    assert skip is None and rejected == []
    assert [row["label_name"] for row in accepted] == ["Bark", "Speech"]
    row = accepted[0]
    assert row["origin"] == "separated" and row["model"] == "fake@0" and row["reject_reason"] == ""
    assert row["track_id"] == "abcdefghijk_30000_m_05tny_"
    assert row["consistency_sisdr"] > 30 and row["leakage_db"] < -30
    assert json.loads(row["thresholds"])["min_re_sdr"] == 10.0


def test_single_event_clip_is_kept_whole_without_a_model():
    maker = TrackMaker(ONTOLOGY, sampling_rate=RATE)
    accepted, rejected, skip = maker(make_clip(["/m/0bt9lr", "/m/05tny_"]), OneClipCorpus(tone(300)))
    assert skip is None and len(accepted) == 1 and accepted[0]["origin"] == "single_source"
    assert accepted[0]["label"] == "/m/05tny_" and accepted[0]["re_sdr"] is None
    _, _, skip = maker(make_clip(["/m/05tny_", "/m/09x0r"]), OneClipCorpus(tone(300)))
    assert skip.reason == "multi-event clip and no separation model given" and skip.where == "segments.csv:4"


def test_model_nan_and_vocabulary_gaps_become_skips_with_reasons():
    nan = lambda audio, queries: np.full((len(queries), audio.size), np.nan, dtype=np.float32)
    _, _, skip = run_maker(FakeSeparator(nan), ["/m/05tny_", "/m/09x0r"], tone(300))
    assert skip.reason.startswith("model output is not finite (NaN/inf) for /m/05tny_, /m/09x0r")
    ontology_only = Ontology.from_entries(ONTOLOGY.to_entries() + [{"id": "/m/0395lw", "name": "Bell", "child_ids": []}])
    maker = TrackMaker(ontology_only, FakeSeparator(nan), "fake@0")
    _, _, skip = maker(make_clip(["/m/0395lw", "/m/09x0r"]), OneClipCorpus(tone(300)))
    assert skip.reason == "labels outside the model's query vocabulary: /m/0395lw (Bell)"
    _, _, skip = maker(make_clip(["/m/zzzz", "/m/09x0r"]), OneClipCorpus(tone(300)))
    assert skip.reason == "labels not in the ontology: /m/zzzz"
