"""The features of a ClearSep track dataset (the engine's output and the trainer's input)."""

from __future__ import annotations

from datasets import Audio, Features, Value

ORIGIN_SINGLE_SOURCE = "single_source"
ORIGIN_SEPARATED = "separated"

#: Field descriptions, shown in the README and the dataset card.
TRACK_FIELDS: dict[str, str] = {
    "audio": "The track as FLAC bytes (mono), decoded by datasets' Audio feature.",
    "track_id": "Unique id of the track: `{clip_id}_{start_ms}_{label slug}`.",
    "clip_id": "YouTube id (YTID) of the source clip.",
    "start_seconds": "Segment start within the YouTube video, as in the AudioSet CSV.",
    "end_seconds": "Segment end within the YouTube video, as in the AudioSet CSV.",
    "label": "AudioSet MID of the sound event this track holds (the query).",
    "label_name": "Display name of `label`.",
    "clip_labels": "All MIDs the clip was annotated with, as listed in the corpus.",
    "origin": "`single_source` (a clip with one label, kept whole) or `separated` (a model output).",
    "re_sdr": "Re-SDR in dB: SDR of the original clip against the sum of its separated tracks (clip-level, copied to each track). Null for single-source tracks.",
    "re_sisdr": "Re-SI-SDR in dB: the scale-invariant version of `re_sdr`. Null for single-source tracks.",
    "energy_ratio": "Energy of the track relative to the clip, in dB (0 dB for single-source tracks).",
    "consistency_sisdr": "SI-SDR in dB between the track and the model's re-separation of the track with its own query: a clean track comes back unchanged. Null for single-source tracks.",
    "leakage_db": "Energy in dB, relative to the track, of the most energetic re-separation of the track with the clip's other queries: a clean track yields near-silence. Null when the clip has one query.",
    "iteration": "Round of the ClearSep loop that produced the track (`build --iteration`; round 0 holds only single-source clips).",
    "model": "Separation model that produced the track: `{id}@{revision}` (empty for single-source tracks).",
    "thresholds": "JSON of the thresholds the track was filtered with.",
    "reject_reason": "Why the track was rejected (empty in the accepted split).",
}

TRACK_FEATURE_TYPES: dict[str, object] = {
    "track_id": Value("string"),
    "clip_id": Value("string"),
    "start_seconds": Value("float64"),
    "end_seconds": Value("float64"),
    "label": Value("string"),
    "label_name": Value("string"),
    "clip_labels": [Value("string")],
    "origin": Value("string"),
    "re_sdr": Value("float32"),
    "re_sisdr": Value("float32"),
    "energy_ratio": Value("float32"),
    "consistency_sisdr": Value("float32"),
    "leakage_db": Value("float32"),
    "iteration": Value("int32"),
    "model": Value("string"),
    "thresholds": Value("string"),
    "reject_reason": Value("string"),
}


def track_features(sampling_rate: int) -> Features:
    """The ``datasets.Features`` of a track dataset whose audio is at ``sampling_rate``."""
    return Features({"audio": Audio(sampling_rate=sampling_rate), **TRACK_FEATURE_TYPES})
