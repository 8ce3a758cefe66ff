"""`clearsep-data evaluate` and clearsep_data.evaluation on tiny benchmarks written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.demo_corpus import demo_ontology, generate_demo_corpus, label_vocabulary
from clearsep_data.ontology import mid_slug
from clearsep_data.benchmark_folder import BenchmarkError, read_reference_manifest
from clearsep_data.evaluation import METRICS, evaluate_on_benchmark
from clearsep_data.modeling import ClearSepConfig, ClearSepModel

SR = 16000
LENGTH = int(1.5 * SR)
SPEECH, DOG, BARK, SIREN, CHIRP, BIRD, PIANO, RAIN = (
    "/m/09x0r", "/m/0bt9lr", "/m/05tny_", "/m/03kmc9", "/m/07pggtn", "/m/015p6", "/m/05r5c", "/m/06mb1",
)  # fmt: skip
# The model queries Bird, not Chirp: a "Chirp, tweet" label is lifted to Bird and its reference scores that query.
MODEL_VOCABULARY = {SPEECH: "Speech", BARK: "Bark", SIREN: "Siren", BIRD: "Bird", PIANO: "Piano", RAIN: "Rain"}


def _source(kind: str, seed: int) -> np.ndarray:
    """A distinct synthetic source: enveloped tones or noise, about -20 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 4) * t + rng.uniform(0, 6))
    if kind == "noise":
        signal = rng.standard_normal(LENGTH)
    elif kind == "sweep":
        signal = np.sin(2 * np.pi * (700 * t + 150 * np.sin(2 * np.pi * 0.7 * t)))
    else:
        frequency = {"low": 180.0, "mid": 900.0, "high": 4000.0}[kind]
        signal = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in (1, 2, 3))
    signal = envelope * signal
    return (0.1 * signal / np.sqrt(np.mean(signal**2))).astype(np.float32)


# clip id -> (labels in the segments row, {reference label: source kind}, has audio file)
CLIPS = {
    "clipAAAAAAA": ([SPEECH, BARK, DOG], {SPEECH: "low", BARK: "mid", "background": "noise"}, True),
    "clipBBBBBBB": ([SIREN, CHIRP], {SIREN: "sweep", CHIRP: "high"}, True),
    "clipCCCCCCC": ([SPEECH, PIANO], {}, False),  # no audio file: skipped by the corpus reader
    "clipDDDDDDD": ([SIREN, RAIN], None, True),  # no references in the manifest
    "clipEEEEEEE": ([SPEECH, PIANO], {SPEECH: "low", PIANO: "mid"}, True),  # its Piano reference is corrupt
    "clipFFFFFFF": ([SPEECH, RAIN], {SPEECH: "mid", RAIN: "noise"}, True),  # Rain's reference is left out below
}
UNLISTED = {("clipFFFFFFF", RAIN)}  # a query without reference: only that query is skipped


def write_benchmark(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """An AudioSet-style folder with references; returns each clip's sources as written (16-bit)."""
    (root / "audio").mkdir(parents=True)
    (root / "references").mkdir()
    (root / "ontology.json").write_text(json.dumps(demo_ontology().to_entries()))
    with open(root / "class_labels_indices.csv", "w") as handle:
        handle.write("index,mid,display_name\n")
        for index, (mid, name) in enumerate(label_vocabulary()):
            handle.write(f'{index},{mid},"{name}"\n')
    segments = ["# Segments csv", "# num_ytids=6", "# YTID, start_seconds, end_seconds, positive_labels"]
    manifest = ["ytid,label,path"]
    written: dict[str, dict[str, np.ndarray]] = {}
    for number, (ytid, (labels, references, has_audio)) in enumerate(CLIPS.items()):
        segments.append(f'{ytid}, 30.000, 31.500, "{",".join(labels)}"')
        sources = {label: _source(kind, 10 * number + position) for position, (label, kind) in enumerate((references or {}).items())}
        if not sources:
            sources = {label: _source("noise", 10 * number + position) for position, label in enumerate(labels)}
        written[ytid] = {}
        for label, source in sources.items():
            path = Path("references") / ytid / f"{mid_slug(label)}.flac"
            (root / path).parent.mkdir(exist_ok=True)
            sf.write(root / path, source, SR, subtype="PCM_16")
            written[ytid][label] = sf.read(root / path, dtype="float32")[0]
            if references is not None and (ytid, label) not in UNLISTED:
                manifest.append(f"{ytid},{label},{path}")
        if has_audio:
            sf.write(root / "audio" / f"{ytid}.flac", sum(sources.values()), SR, subtype="PCM_16")
    (root / "references" / "clipEEEEEEE" / "m_05r5c.flac").write_bytes(b"not audio at all")
    (root / "eval_segments.csv").write_text("\n".join(segments) + "\n")
    (root / "references" / "manifest.csv").write_text("\n".join(manifest) + "\n")
    return written


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("benchmark")
    return root, write_benchmark(root)


@pytest.fixture(scope="module")
def model() -> ClearSepModel:
    torch.manual_seed(0)
    config = ClearSepConfig(
        label_mids=list(MODEL_VOCABULARY), id2label=dict(enumerate(MODEL_VOCABULARY.values())), channels=[8, 16]
    )
    return ClearSepModel(config).eval()


@pytest.fixture(scope="module")
def summary(benchmark, model) -> dict:
    root, _ = benchmark
    return evaluate_on_benchmark(model, root, batch_size=2, num_workers=2).to_dict(include_items=True)


def _db(numerator: np.ndarray, denominator: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(numerator.astype(np.float64) ** 2) / np.sum(denominator.astype(np.float64) ** 2)))


def test_json_structure(summary, model):
    assert set(summary) == {
        "model", "dataset", "split", "sampling_rate", "num_clips", "num_items", "metrics", "per_class", "oracle",
        "mixture", "parents", "absent", "num_skipped", "skipped", "items", "absent_items",
    }  # fmt: skip
    assert summary["split"] == "eval" and summary["sampling_rate"] == SR
    assert set(summary["metrics"]) == set(METRICS)
    assert summary["oracle"]["method"] == "ideal ratio mask"
    assert (summary["oracle"]["n_fft"], summary["oracle"]["hop_length"]) == (model.config.n_fft, model.config.hop_length)
    # clip A: Speech, Bark (Dog is redundant); clip B: Siren, Bird (lifted from Chirp); clip F: Speech only.
    assert summary["num_items"] == 5 and summary["num_clips"] == 3
    scored = sorted((item["clip_id"], item["name"]) for item in summary["items"])
    assert scored == [
        ("clipAAAAAAA", "Bark"), ("clipAAAAAAA", "Speech"), ("clipBBBBBBB", "Bird"), ("clipBBBBBBB", "Siren"),
        ("clipFFFFFFF", "Speech"),
    ]  # fmt: skip
    assert summary["per_class"]["Bird"]["mid"] == BIRD
    assert json.loads(json.dumps(summary)) == summary  # plain JSON: no NaN, no numpy types


def test_bad_clips_are_skipped_with_reasons(summary):
    reasons = {skip["clip_id"]: skip["reason"] for skip in summary["skipped"]}
    assert summary["num_skipped"] == len(summary["skipped"]) == 4
    assert "no audio file" in reasons["clipCCCCCCC"]
    assert "no references" in reasons["clipDDDDDDD"]
    assert "reference /m/05r5c" in reasons["clipEEEEEEE"] and "m_05r5c.flac" in reasons["clipEEEEEEE"]
    assert "query Rain (/m/06mb1)" in reasons["clipFFFFFFF"] and "no reference" in reasons["clipFFFFFFF"]
    assert all(skip["where"].startswith("eval_segments.csv:") for skip in summary["skipped"])


def test_mixture_row_is_the_unprocessed_baseline(summary, benchmark):
    _, sources = benchmark
    assert summary["mixture"]["sdri"] == pytest.approx(0.0, abs=1e-9)
    assert summary["mixture"]["si_sdri"] == pytest.approx(0.0, abs=1e-9)
    # Independent check of target assembly: the lifted Bird query is scored against the Chirp reference,
    # Speech of clip A against the Speech reference alone (background and Bark are interference).
    items = {(item["clip_id"], item["name"]): item for item in summary["items"]}
    clip_b = sources["clipBBBBBBB"]
    mixture_b = sf.read(Path(benchmark[0]) / "audio" / "clipBBBBBBB.flac", dtype="float32")[0]
    assert items["clipBBBBBBB", "Bird"]["mixture_sdr"] == pytest.approx(_db(clip_b[CHIRP], mixture_b - clip_b[CHIRP]), abs=1e-3)
    clip_a = sources["clipAAAAAAA"]
    mixture_a = sf.read(Path(benchmark[0]) / "audio" / "clipAAAAAAA.flac", dtype="float32")[0]
    assert items["clipAAAAAAA", "Speech"]["mixture_sdr"] == pytest.approx(_db(clip_a[SPEECH], mixture_a - clip_a[SPEECH]), abs=1e-3)
    assert summary["mixture"]["sdr"] == pytest.approx(np.mean([item["mixture_sdr"] for item in summary["items"]]))


def test_oracle_beats_the_mixture(summary):
    for key in METRICS:
        assert summary["oracle"][key] > summary["mixture"][key] + 3
    for item in summary["items"]:
        assert item["oracle_si_sdr"] > item["mixture_si_sdr"]


def test_per_class_means_average_to_the_overall_mean(summary):
    per_class = summary["per_class"]
    counts = np.array([row["count"] for row in per_class.values()])
    assert counts.sum() == summary["num_items"]
    assert per_class["Speech"]["count"] == 2
    for key in METRICS:
        weighted = np.sum(counts * np.array([row[key] for row in per_class.values()])) / counts.sum()
        assert weighted == pytest.approx(summary["metrics"][key], abs=1e-9)
        assert summary["metrics"][key] == pytest.approx(np.mean([item[key] for item in summary["items"]]), abs=1e-9)


def test_perfect_model(benchmark, model, monkeypatch):
    """A model returning the references scores near the numerical ceiling, and SI-SDRi = SI-SDR - mixture SI-SDR."""
    root, sources = benchmark
    mixtures = {ytid: sf.read(root / "audio" / f"{ytid}.flac", dtype="float32")[0] for ytid in ("clipAAAAAAA", "clipBBBBBBB", "clipFFFFFFF")}
    reference_of = {BIRD: CHIRP}

    def separate(audio, queries, sampling_rate=None, **_):
        outputs = []
        for mixture, query_list in zip(audio, queries):
            ytid = min(mixtures, key=lambda name: np.abs(mixtures[name] - mixture).max())
            silence = np.zeros_like(mixture)
            outputs.append(np.stack([sources[ytid].get(reference_of.get(query, query), silence) for query in query_list]))
        return outputs

    monkeypatch.setattr(model, "separate", separate)
    result = evaluate_on_benchmark(model, root, num_workers=1).to_dict(include_items=True)
    assert result["num_items"] == 5
    for item in result["items"]:
        assert item["si_sdr"] > 60 and item["sdr"] > 60
        assert item["si_sdri"] == pytest.approx(item["si_sdr"] - item["mixture_si_sdr"], abs=1e-9)
    assert result["metrics"]["si_sdri"] == pytest.approx(result["metrics"]["si_sdr"] - result["mixture"]["si_sdr"], abs=1e-9)
    assert result["metrics"]["sdr"] > result["oracle"]["sdr"]


def test_max_clips_and_no_oracle(benchmark, model):
    root, _ = benchmark
    result = evaluate_on_benchmark(model, root, max_clips=2, oracle=False)
    assert result.num_clips == 2 and result.num_items == 4 and not result.skipped
    assert result.oracle is None and result.to_dict()["oracle"] is None
    assert all(item.oracle_sdr is None for item in result.items)


def test_nothing_scorable_gives_an_empty_summary(tmp_path, model):
    (tmp_path / "ontology.json").write_text(json.dumps(demo_ontology().to_entries()))
    (tmp_path / "class_labels_indices.csv").write_text("index,mid,display_name\n0,/m/09x0r,Speech\n")
    (tmp_path / "eval_segments.csv").write_text('# a\n# b\n# YTID, start_seconds, end_seconds, positive_labels\nabcdefghijk, 0.000, 1.000, "/m/09x0r"\n')
    (tmp_path / "references").mkdir()
    (tmp_path / "references" / "manifest.csv").write_text("ytid,label,path\n")
    summary = evaluate_on_benchmark(model, tmp_path).to_dict()
    assert summary["num_items"] == 0 and summary["metrics"] is None and summary["per_class"] == {}
    assert summary["num_skipped"] == 1 and "no audio file" in summary["skipped"][0]["reason"]


def test_reference_manifest_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="manifest.csv: not found"):
        read_reference_manifest(tmp_path)
    (tmp_path / "references").mkdir()
    manifest = tmp_path / "references" / "manifest.csv"
    manifest.write_text("ytid,mid,file\n")
    with pytest.raises(BenchmarkError, match="header lacks label, path"):
        read_reference_manifest(tmp_path)
    manifest.write_text("ytid,label,path\nabc,/m/09x0r,references/abc/m_09x0r.flac\nabc,,references/abc/x.flac\n")
    with pytest.raises(BenchmarkError, match=r"manifest.csv:3: empty label"):
        read_reference_manifest(tmp_path)


def test_cli_writes_json(benchmark, model, tmp_path):
    root, _ = benchmark
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    output = tmp_path / "out" / "eval.json"
    runner = CliRunner()
    args = ["evaluate", str(model_dir), str(root), "--output", str(output), "--save-to-model", "--no-progress", "--no-oracle", "--per-item", "--max-clips", "3"]
    outcome = runner.invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    written = json.loads(output.read_text())
    assert json.loads((model_dir / "eval.json").read_text()) == written
    assert written["model"] == str(model_dir) and written["dataset"] == root.name
    assert written["oracle"] is None and len(written["items"]) == written["num_items"] == 4
    assert written["num_skipped"] == 1
    assert "SI-SDRi" in outcome.output and "Siren" in outcome.output and "skipped 1" in outcome.output
    assert "Loading weights" not in outcome.output and "it/s]" not in outcome.output  # one progress display: ours

    refused = runner.invoke(app, ["evaluate", "org/some-model", str(root), "--save-to-model"])
    assert refused.exit_code == 1 and "needs a local model folder" in refused.output
    missing = runner.invoke(app, ["evaluate", str(model_dir), str(tmp_path), "--no-progress"])
    assert missing.exit_code == 1 and "manifest.csv: not found" in " ".join(missing.output.split())
    assert "Loading weights" not in missing.output  # the benchmark is checked before the model loads


def test_demo_corpus_is_a_benchmark(tmp_path, model):
    """The demo corpus generator's eval split evaluates with every clip and every event scored."""
    generate_demo_corpus(tmp_path / "demo", clips=1, eval_clips=3, seconds=1.0)
    vocabulary = label_vocabulary()[:9]  # the nine demo events
    demo_model = ClearSepModel(
        ClearSepConfig(label_mids=[mid for mid, _ in vocabulary], id2label=dict(enumerate(name for _, name in vocabulary)), channels=[8, 16])
    ).eval()
    result = evaluate_on_benchmark(demo_model, tmp_path / "demo")
    manifest = read_reference_manifest(tmp_path / "demo")
    assert result.num_clips == 3 and not result.skipped
    events = sum(1 for item in result.items for reference in manifest[item.clip_id] if reference.label == item.query)
    assert events == result.num_items
    assert result.oracle["si_sdr"] > result.mixture["si_sdr"]


def test_parent_and_absent_queries_are_reported_apart(benchmark, monkeypatch):
    """A model that knows Dog is asked Dog on the Bark clip (target: the Bark reference) and one absent class per
    clip; neither changes the main metrics."""
    root, sources = benchmark
    vocabulary = {**MODEL_VOCABULARY, DOG: "Dog"}
    model = ClearSepModel(
        ClearSepConfig(label_mids=list(vocabulary), id2label=dict(enumerate(vocabulary.values())), channels=[8, 16])
    ).eval()

    def separate(audio, queries, sampling_rate=None, **_):  # the references for present queries, else silence
        mixtures = {ytid: sf.read(root / "audio" / f"{ytid}.flac", dtype="float32")[0] for ytid in ("clipAAAAAAA", "clipBBBBBBB", "clipFFFFFFF")}
        outputs = []
        for mixture, query_list in zip(audio, queries):
            ytid = min(mixtures, key=lambda name: np.abs(mixtures[name] - mixture).max())
            found = {DOG: BARK, BIRD: CHIRP}
            outputs.append(np.stack([sources[ytid].get(found.get(q, q), 0 * mixture) for q in query_list]))
        return outputs

    monkeypatch.setattr(model, "separate", separate)
    result = evaluate_on_benchmark(model, root, num_workers=1, oracle=False)
    summary = result.to_dict(include_items=True)
    assert summary["num_items"] == 5 and summary["per_class"].keys() == {"Speech", "Bark", "Bird", "Siren"}
    parents = [item for item in summary["items"] if item["kind"] == "parent"]
    assert [(item["clip_id"], item["name"], item["child"]) for item in parents] == [("clipAAAAAAA", "Dog", BARK)]
    assert parents[0]["si_sdr"] > 60 and abs(summary["parents"]["si_sdr_minus_child"]) < 1e-6
    assert summary["parents"]["per_class"] == {"Dog": {"count": 1, "si_sdr": parents[0]["si_sdr"]}}
    absent = summary["absent_items"]
    assert len(absent) == summary["num_clips"] == 3 and summary["absent"]["num_items"] == 3
    for score in absent:  # unrelated to every label of its clip: never Dog or Bark on clip A, never Bird on clip B
        labels = CLIPS[score["clip_id"]][0]
        assert score["query"] not in labels and not (score["query"] in (DOG, BARK) and BARK in labels)
        assert score["level_db"] < -100
    assert summary["absent"]["median_level_db"] < -100 and summary["absent"]["share_below_-30_db"] == 1.0
