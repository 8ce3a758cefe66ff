"""Training: on-the-fly mixing, the three strategies for separated tracks, the accelerate loop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clearsep_data.audio import encode_flac
from clearsep_data.training.catalog import LabelRelations, NaturalClips, TrackCatalog, TrackDataError, load_track_dataset
from clearsep_data.training.mixing import MixingConfig, MixtureSampler, MixtureStream, quality_weight
from clearsep_data.ontology import Ontology

RATE = 16000
CLIP_SECONDS = 2.0
ANIMAL, DOG, BARK = "/m/0jbk", "/m/0bt9lr", "/m/05tny_"
SPEECH, SIREN, PIANO, ENGINE = "/m/09x0r", "/m/03kmc9", "/m/05r5c", "/m/02mk9"
NAMES = {ANIMAL: "Animal", DOG: "Dog", BARK: "Bark", SPEECH: "Speech", SIREN: "Siren", PIANO: "Piano", ENGINE: "Engine"}
TONES = {DOG: 260.0, BARK: 700.0, SPEECH: 330.0, SIREN: 1500.0, PIANO: 2200.0, ENGINE: 120.0}
# Multi-label clips of the natural corpus: labels, then {label: re_sisdr} of accepted and rejected tracks.
NATURAL = {
    "nat00000001": ([SPEECH, SIREN], {SPEECH: 12.0, SIREN: 12.0}, {}),
    "nat00000002": ([PIANO, BARK, DOG], {PIANO: -5.0, BARK: -5.0}, {}),  # Dog is Bark's parent: 2 queries
    "nat00000003": ([SPEECH, ENGINE], {SPEECH: 10.0}, {ENGINE: 0.0}),  # a track rejected
    "nat00000004": ([SIREN, PIANO], {SIREN: 10.0}, {}),  # Piano never separated
}
SINGLE = [SPEECH, SPEECH, BARK, BARK, DOG, SIREN, SIREN, PIANO, PIANO]


def tone(label: str, seed: int) -> np.ndarray:
    """A label's tone with a random slow envelope: distinct per label, easy to separate."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(CLIP_SECONDS * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * time + rng.uniform(0, 6.28))
    return (0.3 * envelope * np.sin(2 * np.pi * TONES[label] * time)).astype(np.float32)


def track_row(clip_id: str, label: str, origin: str, audio: np.ndarray, clip_labels: list[str], re_sisdr=None, reason=""):
    return dict(
        audio={"bytes": encode_flac(audio, RATE), "path": None},
        track_id=f"{clip_id}_30000_{label.strip('/').replace('/', '_')}",
        clip_id=clip_id,
        start_seconds=30.0,
        end_seconds=30.0 + CLIP_SECONDS,
        label=label,
        label_name=NAMES[label],
        clip_labels=clip_labels,
        clip_label_names=[NAMES[mid] for mid in clip_labels],
        origin=origin,
        re_sdr=re_sisdr,
        re_sisdr=re_sisdr,
        energy_ratio=0.0,
        consistency_sisdr=None if origin == "single_source" else 20.0,
        leakage_db=None,
        predicted_si_sdr=None if origin == "single_source" else re_sisdr,
        iteration=0,
        model="" if origin == "single_source" else "test@0",
        thresholds="{}",
        reject_reason=reason,
    )


def write_ontology(path: Path) -> Path:
    children = {ANIMAL: [DOG], DOG: [BARK]}
    path.write_text(json.dumps([{"id": mid, "name": name, "child_ids": children.get(mid, [])} for mid, name in NAMES.items()]))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """A track dataset (train + rejected splits), the natural corpus it came from and its ontology."""
    from datasets import Dataset

    from clearsep_data.tracks import track_features

    root = tmp_path_factory.mktemp("training")
    train, rejected = [], []
    for index, label in enumerate(SINGLE):
        clip_labels = [ANIMAL, DOG, BARK] if label == BARK else [label]
        train.append(track_row(f"single{index:05d}", label, "single_source", tone(label, index), clip_labels))
    corpus = root / "corpus"
    (corpus / "audio").mkdir(parents=True)
    segments = ["# Segments", "# num_ytids=4", "# YTID, start_seconds, end_seconds, positive_labels"]
    for number, (clip_id, (labels, accepted, refused)) in enumerate(NATURAL.items()):
        sources = {label: tone(label, 100 + 10 * number + i) for i, label in enumerate([*accepted, *refused])}
        for label, score in accepted.items():
            train.append(track_row(clip_id, label, "separated", sources[label], labels, score))
        for label, score in refused.items():
            rejected.append(track_row(clip_id, label, "separated", sources[label], labels, score, "re_sdr too low"))
        mixture = sum(sources.values()) + (tone(PIANO, 99) if clip_id == "nat00000004" else 0)
        (corpus / "audio" / f"{clip_id}.flac").write_bytes(encode_flac(mixture, RATE))
        segments.append(f'{clip_id}, 30.000, {30 + CLIP_SECONDS:.3f}, "{",".join(labels)}"')
    (corpus / "balanced_train_segments.csv").write_text("\n".join(segments) + "\n")
    write_ontology(corpus / "ontology.json")
    (corpus / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f"{i},{mid},{NAMES[mid]}\n" for i, mid in enumerate(TONES))
    )
    dataset = root / "tracks"
    Dataset.from_dict({k: [r[k] for r in train] for k in train[0]}, features=track_features(RATE)).to_parquet(
        str(dataset / "data/train-00000-of-00001.parquet")
    )
    Dataset.from_dict({k: [r[k] for r in rejected] for k in rejected[0]}, features=track_features(RATE)).to_parquet(
        str(dataset / "data/rejected-00000-of-00001.parquet")
    )
    return {"dataset": str(dataset), "corpus": str(corpus), "ontology": str(corpus / "ontology.json"), "root": root}


@pytest.fixture(scope="module")
def catalog(data) -> TrackCatalog:
    vocabulary = sorted(TONES.keys() - {ENGINE})
    return TrackCatalog.from_sources([load_track_dataset(data["dataset"])], vocabulary, RATE, cache_bytes=2**30)


def make_sampler(catalog, ontology=None, natural=None, seed=0, process_index=0, **config) -> MixtureSampler:
    settings = dict(segment_samples=RATE // 2, batch_size=4, silence_rate=0.0, quality="off") | config
    return MixtureSampler(
        catalog, LabelRelations(catalog.vocabulary, ontology), MixingConfig(**settings),
        seed=seed, process_index=process_index, natural=natural,
    )


def examples(sampler: MixtureSampler, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [sampler.example(rng) for _ in range(count)]


# --------------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------------


def test_catalog_reads_tracks_and_rejected_clips(catalog):
    assert len(catalog) == len(SINGLE) + 6
    assert ("nat00000003", 30000) in catalog.rejected_clips
    assert catalog.audio.caching  # 15 tracks of 2 s fit the bound
    waveform = catalog.waveform(0)
    assert waveform.dtype == np.float32 and waveform.shape == (int(CLIP_SECONDS * RATE),)
    assert catalog.waveform(0) is waveform  # decoded once


def test_mixtures_respect_mutual_exclusivity(catalog, data):
    ontology = Ontology.from_json(data["ontology"])
    sampler = make_sampler(catalog, ontology, max_interferers=3)
    drawn = examples(sampler, 200)
    sizes = Counter(len(example.labels) for example in drawn)
    assert set(sizes) <= {2, 3, 4} and len(sizes) >= 2
    for example in drawn:
        assert len(set(example.labels)) == len(example.labels)
        assert not {DOG, BARK} <= set(example.labels), example.mixture_tracks
        clips = [track.split("_")[0] for track in example.mixture_tracks]
        assert len(set(clips)) == len(clips)  # never two tracks of one clip
        if len(example.labels) == len(example.queries):  # the targets are all of the sources
            np.testing.assert_allclose(example.mixture, example.targets.sum(0), atol=1e-5)
        assert np.abs(example.mixture).max() <= 0.99 + 1e-6
    # Without an ontology, labels are exclusive iff different: Dog and Bark may then meet.
    plain = examples(make_sampler(catalog, None, max_interferers=3), 200)
    assert any({DOG, BARK} <= set(example.labels) for example in plain)


def test_mixtures_are_deterministic_per_seed_process_and_index(catalog):
    first, again = make_sampler(catalog).batch(7), make_sampler(catalog).batch(7)
    for key in ("input_values", "query_ids", "target_values", "target_weights"):
        np.testing.assert_array_equal(first[key], again[key])
    assert first["query_tracks"] == again["query_tracks"]
    assert not np.array_equal(first["input_values"], make_sampler(catalog).batch(8)["input_values"])
    assert not np.array_equal(first["input_values"], make_sampler(catalog, process_index=1).batch(7)["input_values"])
    assert not np.array_equal(first["input_values"], make_sampler(catalog, seed=1).batch(7)["input_values"])
    import torch

    loader = torch.utils.data.DataLoader(MixtureStream(make_sampler(catalog), 5, 9), batch_size=None, num_workers=2)
    streamed = [batch["query_tracks"] for batch in loader]  # two workers, same order as one process
    assert streamed == [make_sampler(catalog).batch(index)["query_tracks"] for index in range(5, 9)]
    batch = first
    assert batch["input_values"].shape == (4, RATE // 2) and batch["target_values"].shape == (4, 2, RATE // 2)
    assert batch["query_ids"].shape == (4, 2) and batch["target_weights"].dtype == np.float32


def test_the_quality_score_is_the_field_asked_for_and_a_dataset_without_it_is_named(data, catalog, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    vocabulary = sorted(TONES.keys() - {ENGINE})
    for variant, change in (("negated", lambda table, i: table.set_column(i, "predicted_si_sdr", pa.compute.negate(table["predicted_si_sdr"]))),
                            ("older", lambda table, i: table.remove_column(i))):
        (tmp_path / variant / "data").mkdir(parents=True)
        for shard in Path(data["dataset"], "data").glob("*.parquet"):
            table = pq.read_table(shard)
            pq.write_table(change(table, table.schema.get_field_index("predicted_si_sdr")), tmp_path / variant / "data" / shard.name)
    negated = TrackCatalog.from_sources([load_track_dataset(str(tmp_path / "negated"))], vocabulary, RATE, 2**30,
                                        quality_score="predicted_si_sdr")
    assert negated.track_ids == catalog.track_ids
    np.testing.assert_array_equal(negated.quality, -catalog.quality)  # the fixture's predictions equal its Re-SI-SDR
    assert np.isnan(negated.quality[[o == "single_source" for o in negated.origins]]).all()
    older = load_track_dataset(str(tmp_path / "older"))
    assert TrackCatalog.from_sources([older], vocabulary, RATE, 2**30).quality.tolist() == pytest.approx(catalog.quality.tolist(), nan_ok=True)
    with pytest.raises(TrackDataError, match=r"older.*no 'predicted_si_sdr' field.*--quality-score re_sisdr"):
        TrackCatalog.from_sources([older], vocabulary, RATE, 2**30, quality_score="predicted_si_sdr")


def test_balanced_classes_give_every_class_the_same_share_of_the_draws(catalog):
    def class_shares(sampler):
        per_class = np.bincount(catalog.label_index, weights=sampler.draw_weights, minlength=len(catalog.vocabulary))
        return per_class[per_class > 0] / per_class.sum()

    plain, balanced = make_sampler(catalog), make_sampler(catalog, balance_classes=True)
    assert np.ptp(class_shares(plain)) > 0.05  # the fixture's classes have different numbers of tracks
    np.testing.assert_allclose(class_shares(balanced), 1 / len(class_shares(balanced)))
    counts = np.bincount(catalog.label_index)
    present = np.flatnonzero(counts)
    rarest = catalog.vocabulary[present[np.argmin(counts[present])]]
    targets = {name: Counter(example.labels[0] for example in examples(sampler, 300)) for name, sampler in
               (("plain", plain), ("balanced", balanced))}
    assert targets["balanced"][rarest] > targets["plain"][rarest]


def test_quality_strategy_samples_or_weights_by_re_sisdr(catalog):
    weights = quality_weight(catalog.quality, 5.0, 2.0)
    low = {catalog.track_ids[i] for i in np.flatnonzero(weights < 0.01)}
    assert len(low) == 2  # the two tracks of nat00000002 (Re-SI-SDR -5 dB)
    assert np.all(weights[[o == "single_source" for o in catalog.origins]] == 1.0)

    def share_of_low(mode: str) -> float:
        drawn = [t for e in examples(make_sampler(catalog, quality=mode), 300) for t in e.mixture_tracks]
        return sum(track in low for track in drawn) / len(drawn)

    assert share_of_low("off") > 0.05
    assert share_of_low("sample") < 0.005
    weighted = make_sampler(catalog, quality="weight")
    for example in examples(weighted, 100):
        for track, weight in zip(example.query_tracks, example.weights):
            expected = weights[catalog.track_ids.index(track)]
            assert weight == pytest.approx(expected, rel=1e-6)
    assert all(np.all(e.weights == 1) for e in examples(make_sampler(catalog, quality="off"), 50))


def test_silence_strategy_asks_for_absent_classes(catalog, data):
    ontology = Ontology.from_json(data["ontology"])
    relations = LabelRelations(catalog.vocabulary, ontology)
    silent = examples(make_sampler(catalog, ontology, silence_rate=1.0), 100)
    crowded = [e for e in silent if not relations.absent_mask(e.labels).any()]  # every class sounds: none absent
    assert 0 < len(crowded) < 50 and not any(any(e.silent) for e in crowded)
    for example in (e for e in silent if relations.absent_mask(e.labels).any()):
        assert all(example.silent) and not example.targets.any() and np.abs(example.mixture).max() > 0
        for query in example.queries:
            label = catalog.vocabulary[query]
            assert label not in example.labels
            assert all(relations.exclusive[query, catalog.vocabulary.index(m)] for m in example.labels)
    two_sources = make_sampler(catalog, ontology, silence_rate=0.2, max_interferers=1)  # never crowded
    rate = np.mean([s for e in examples(two_sources, 400) for s in e.silent])
    assert 0.15 < rate < 0.25
    assert not any(any(e.silent) for e in examples(make_sampler(catalog, ontology), 100))


def test_parent_strategy_asks_for_a_class_above_the_track_with_every_source_below_it(catalog, data):
    ontology = Ontology.from_json(data["ontology"])
    relations = LabelRelations(catalog.vocabulary, ontology)
    dog, bark = catalog.vocabulary.index(DOG), catalog.vocabulary.index(BARK)
    assert relations.parents_of(bark).tolist() == [dog] and relations.parents_of(dog).size == 0  # Animal: not queryable
    assert relations.covers[dog, bark] and not relations.covers[bark, dog]
    label_of = dict(zip(catalog.track_ids, catalog.label_index))
    lifted = examples(make_sampler(catalog, ontology, parent_rate=1.0, max_interferers=1), 100)
    assert bark not in {q for e in lifted for q in e.queries}  # every Bark query became Dog
    asked_dog = 0
    for example in lifted:
        # Both sources are queried: the targets still sum to the mixture, a parent's target being its child's track.
        np.testing.assert_allclose(example.targets.sum(0), example.mixture, atol=1e-6)
        for query, tracks in zip(example.queries, example.query_tracks):
            assert all(relations.covers[query, label_of[track]] for track in tracks.split("+"))
            asked_dog += query == dog and any(label_of[t] == bark for t in tracks.split("+"))
    assert asked_dog > 10
    half = examples(make_sampler(catalog, ontology, parent_rate=0.5), 400)
    slots = [(q, t) for e in half for q, t in zip(e.queries, e.query_tracks) if label_of[t] == bark]
    assert 0.4 < np.mean([q == dog for q, _ in slots]) < 0.6


def test_natural_strategy_uses_complete_accepted_clips(catalog, data):
    from clearsep_data.corpus import open_corpus

    natural = NaturalClips.from_corpus(open_corpus(data["corpus"]), catalog, cache_bytes=2**30)
    assert sorted(item.clip.clip_id for item in natural.clips) == ["nat00000001", "nat00000002"]
    assert natural.skipped == {"a track of the clip was rejected": 1, "not every query has an accepted track": 1}
    drawn = examples(make_sampler(catalog, natural=natural, natural_rate=1.0), 40)
    assert all(example.natural for example in drawn)
    for example in drawn:
        # Both queries of a natural clip cover all of its sources: the tracks sum to the original clip.
        np.testing.assert_allclose(example.targets.sum(0), example.mixture, atol=2e-3)
        assert {t.split("_")[0] for t in example.query_tracks} <= {"nat00000001", "nat00000002"}
    mixed = examples(make_sampler(catalog, natural=natural, natural_rate=0.5), 200)
    assert 0.4 < np.mean([example.natural for example in mixed]) < 0.6


def test_augmented_mixtures_are_seeded_and_sum_to_their_targets(catalog):
    from clearsep_data.training.augment import AugmentConfig

    augment = AugmentConfig(RATE, reverb_rate=1.0)
    sampler = make_sampler(catalog, max_interferers=1, augment=augment)  # two sources, both queried
    batch = sampler.batch(3)
    np.testing.assert_array_equal(batch["input_values"], make_sampler(catalog, max_interferers=1, augment=augment).batch(3)["input_values"])
    np.testing.assert_allclose(batch["target_values"].sum(1), batch["input_values"], atol=1e-5)
    plain = make_sampler(catalog, max_interferers=1).batch(3)
    assert batch["query_tracks"][0] == plain["query_tracks"][0]  # the first example's sources, augmented
    assert not np.allclose(batch["input_values"], plain["input_values"], atol=1e-3)


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------

TINY = dict(channels=[4, 8], query_dim=8, encoder_blocks=1, n_fft=256, hop_length=128)


def arguments(data, output: Path, **overrides):
    from clearsep_data.training import TrainingArguments

    settings = dict(
        datasets=[data["dataset"]], output_dir=str(output), ontology=data["ontology"], model_config=TINY,
        batch_size=2, segment_seconds=1.0, lr=3e-3, eval_every=0, save_every=0, log_every=1, progress=False,
    )
    return TrainingArguments(**(settings | overrides))


def weights_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_lowers_the_loss_and_saves_a_model(data, tmp_path):
    from clearsep_data.modeling import ClearSepModel
    from clearsep_data.training import train

    args = arguments(
        data, tmp_path / "run", steps=24, batch_size=4, lr=2e-2, natural_corpus=data["corpus"], eval_every=24, eval_mixtures=8
    )
    result = train(args)
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 25))
    evaluations = [r for r in records if "eval_si_sdri" in r]
    assert [r["step"] for r in evaluations] == [0, 24] and evaluations[-1] == {"step": 24, **result.eval}
    assert evaluations[1]["eval_si_sdri"] > evaluations[0]["eval_si_sdri"] + 2.0, evaluations  # dB, fixed mixtures
    assert result.samples_per_second > 0 and np.isfinite(result.final_loss)
    model = ClearSepModel.from_pretrained(tmp_path / "run")
    assert model.config.label_mids == sorted([BARK, DOG, SPEECH, SIREN, PIANO])
    assert model.config.id2label[model.config.label_mids.index(BARK)] == "Bark"
    saved = json.loads((tmp_path / "run" / "training_args.json").read_text())
    assert saved["seed"] == 0 and saved["quality"] == "weight" and saved["natural_rate"] == 0.25
    assert saved["silence_rate"] == 0.05 and saved["datasets"] == [data["dataset"]]
    assert saved["provenance"]["natural_clips"] == 2 and saved["provenance"]["tracks"]["total"] == len(SINGLE) + 6


def test_training_with_a_pretrained_clap_query_encoder(data, tmp_path):
    from test_clap_queries import tiny_clap_folder

    from clearsep_data.modeling import ClearSepModel
    from clearsep_data.training import TrainingError, train

    clap = tiny_clap_folder(tmp_path / "clap")
    train(arguments(data, tmp_path / "run", steps=2, clap_model=str(clap)))
    model = ClearSepModel.from_pretrained(tmp_path / "run")
    assert model.config.query_encoder == "clap" and (tmp_path / "run" / "clap" / "tokenizer.json").is_file()
    assert model.separate(tone(BARK, 0)[:RATE], ["a dog barking", "Bark"]).shape == (2, RATE)
    with pytest.raises(TrainingError, match="--clap-model .*missing: cannot load a CLAP model"):
        train(arguments(data, tmp_path / "bad", steps=1, clap_model=str(tmp_path / "missing")))


def test_resume_from_checkpoint_continues_identically(data, tmp_path):
    from clearsep_data.training import TrainingError, latest_checkpoint, train

    args = arguments(data, tmp_path / "run", steps=4, grad_accum=2, save_every=2, eval_every=2, eval_mixtures=2)
    train(args)
    uninterrupted = weights_of(tmp_path / "run")
    assert latest_checkpoint(tmp_path / "run").name == "checkpoint-4"
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "checkpoint-4")  # as if killed after step 3

    result = train(args)
    assert result.resumed_from == 2
    resumed = weights_of(tmp_path / "run")
    assert uninterrupted.keys() == resumed.keys()
    for name in uninterrupted:
        assert torch_equal(uninterrupted[name], resumed[name]), name
    steps = [(record["step"], "loss" in record) for record in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert steps == [(0, False), (1, True), (2, True), (2, False), (3, True), (4, True), (4, False)]

    with pytest.raises(TrainingError, match="lr: 0.003 -> 0.01"):
        train(arguments(data, tmp_path / "run", steps=4, grad_accum=2, save_every=2, eval_every=2, eval_mixtures=2, lr=1e-2))

    # A checkpoint saved before a field existed resumes: the field counts as its default (what that release did).
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "checkpoint-4")
    saved_args = tmp_path / "run" / "checkpoints" / "checkpoint-2" / "training_args.json"
    older = {name: value for name, value in json.loads(saved_args.read_text()).items() if name not in ("quality_score", "balance_classes")}
    saved_args.write_text(json.dumps(older))
    assert train(args).resumed_from == 2


def write_benchmark(root: Path, split: str, clips: dict[str, list[str]], data_corpus: str) -> Path:
    """A benchmark folder: ``{split}_segments.csv`` of ``clips`` (id -> labels), their tone mixtures and references."""
    from clearsep_data.corpus_writer import write_clip, write_csv, write_segments

    rows, manifest = [], []
    for number, (clip_id, labels) in enumerate(clips.items()):
        tracks = np.stack([np.round(tone(label, 500 + 10 * number + i) * 16000) for i, label in enumerate(labels)])
        manifest += write_clip(root, clip_id, tracks.astype(np.int16), labels, RATE)
        rows.append((clip_id, 30.0, 30.0 + CLIP_SECONDS, labels))
    write_segments(root / f"{split}_segments.csv", rows, "tests")
    write_csv(root / "references" / "manifest.csv", ("ytid", "label", "path"), manifest)
    write_ontology(root / "ontology.json")
    shutil.copyfile(Path(data_corpus) / "class_labels_indices.csv", root / "class_labels_indices.csv")
    return root


def test_evaluation_on_a_benchmark_split_keeps_the_best_model(data, tmp_path):
    from clearsep_data.training import TrainingError, train

    benchmark = write_benchmark(tmp_path / "bench", "valid", {"val00000001": [SPEECH, SIREN], "val00000002": [PIANO, BARK]}, data["corpus"])
    args = arguments(data, tmp_path / "run", steps=6, lr=3e-2, eval_every=2, eval_benchmark=str(benchmark))
    result = train(args)
    split = f"benchmark {benchmark} split valid"
    evaluations = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval_si_sdri" in r]
    assert [r["step"] for r in evaluations] == [0, 2, 4, 6] and {r["eval_split"] for r in evaluations} == {split}
    assert all(r["eval_items"] == 4 for r in evaluations)  # 2 clips x 2 queries
    best = max(evaluations, key=lambda r: r["eval_si_sdri"])
    assert result.eval == best
    provenance = json.loads((tmp_path / "run" / "training_args.json").read_text())["provenance"]
    assert provenance["eval_split"] == split and provenance["eval"] == best and provenance["last_eval"] == evaluations[-1]
    assert provenance["tracks"]["held_out"] == 0  # the benchmark is the evaluation: every track is trained on
    saved = weights_of(tmp_path / "run")
    kept = weights_of(tmp_path / "run" / "best-model")
    assert all(torch_equal(saved[name], kept[name]) for name in saved)

    with pytest.raises(TrainingError, match="split test"):
        train(arguments(data, tmp_path / "other", steps=2, eval_every=2, eval_benchmark=str(benchmark), eval_split="test"))


def test_lr_schedule_is_chosen_by_name(data, tmp_path):
    from clearsep_data.training import train

    train(arguments(data, tmp_path / "run", steps=3, warmup_steps=1, lr_scheduler_type="constant_with_warmup"))
    rates = [r["lr"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert rates == [3e-3] * 3  # a cosine schedule would have decayed to 0 by step 3


def test_best_model_keeps_the_highest_score_and_restores_its_weights(tmp_path):
    import torch
    from accelerate import PartialState

    from clearsep_data.training.validation import BestModel

    model, state = torch.nn.Linear(2, 1), PartialState(cpu=True)
    best = BestModel(tmp_path, resumed=False)
    for step, score in [(0, -3.0), (2, 5.0), (4, 4.0)]:
        with torch.no_grad():
            model.weight.fill_(step)
        best.offer(step, {"eval_si_sdri": score}, model, state)
    best.restore(model)
    assert best.record == {"step": 2, "eval_si_sdri": 5.0} and torch.equal(model.weight, torch.full((1, 2), 2.0))
    assert BestModel(tmp_path, resumed=True).record == best.record
    assert BestModel(tmp_path, resumed=False).record is None and not (tmp_path / "best-model").exists()


def test_bf16_and_l1_run_after_fp32_runs_in_the_same_process(data, tmp_path):
    from clearsep_data.training import train

    result = train(arguments(data, tmp_path / "bf16", steps=2, bf16=True, loss="l1", quality="sample"))
    assert np.isfinite(result.final_loss) and result.final_loss > 0  # L1 is positive, SNR losses are not
    provenance = json.loads((tmp_path / "bf16" / "training_args.json").read_text())["provenance"]
    assert provenance["mixed_precision"] == "bf16"


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_extending_the_vocabulary_keeps_the_learned_queries():
    import torch

    from clearsep_data.modeling import ClearSepConfig, ClearSepModel
    from clearsep_data.training import extend_vocabulary

    model = ClearSepModel(ClearSepConfig.from_preset("small", label_mids=[SPEECH, BARK], id2label={0: "Speech", 1: "Bark"}, **TINY))
    extended = extend_vocabulary(model, {ENGINE: "Engine"}, source="test")
    assert extended.config.label_mids == [SPEECH, BARK, ENGINE] and extended.config.id2label[2] == "Engine"
    assert extended.query_ids(["Engine", "Speech"]).tolist() == [2, 0]
    old, new = model.query_encoder.embedding.weight, extended.query_encoder.embedding.weight
    assert torch.equal(new[:2], old) and new.shape == (3, old.shape[1])
    mixture = torch.randn(1, RATE // 2)
    with torch.no_grad():
        before = model.eval()(mixture, torch.tensor([[0, 1]])).separated_values
        after = extended.eval()(mixture, torch.tensor([[0, 1]])).separated_values
    torch.testing.assert_close(before, after)


def test_the_objective_is_named_once(tmp_path):
    from huggingface_hub.errors import StrictDataclassClassValidationError

    from clearsep_data.modeling import LOSSES, ClearSepConfig
    from clearsep_data.training import TrainingArguments, TrainingError

    assert set(LOSSES) == {"snr_sisnr", "l1"}
    with pytest.raises(TrainingError, match="loss must be one of snr_sisnr, l1"):
        TrainingArguments(datasets=["tracks"], output_dir=str(tmp_path), loss="l2").validate()
    with pytest.raises(StrictDataclassClassValidationError, match="loss must be one of \\('snr_sisnr', 'l1'\\)"):
        ClearSepConfig(loss="l2")
    # The trainer's objective is the model's (config.loss): a second choice in model_config is refused.
    conflicting = TrainingArguments(datasets=["tracks"], output_dir=str(tmp_path), model_config={"loss": "l1"})
    with pytest.raises(TrainingError, match="set the objective with loss"):
        conflicting.validate()
    TrainingArguments(datasets=["tracks"], output_dir=str(tmp_path), loss="l1", model_config={"loss": "l1"}).validate()


def test_cli_reports_bad_input_clearly(tmp_path):
    from typer.testing import CliRunner

    from clearsep_data.cli import app

    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1 and "cannot load track dataset" in result.output
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--output", str(tmp_path / "o"), "--natural-rate", "0.5"])
    assert result.exit_code == 1 and "natural_rate > 0 needs a natural_corpus" in result.output


def test_two_cpu_processes_draw_different_mixtures(data, tmp_path):
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python", str(bin_dir / "clearsep-data"),
        "train", data["dataset"], "--output", str(tmp_path / "ddp"), "--ontology", data["ontology"],
        "--steps", "2", "--batch-size", "2", "--segment-seconds", "1", "--eval-every", "2", "--eval-mixtures", "4",
        "--save-every", "2", "--log-every", "1", "--log-samples", "--no-progress",
        *[arg for key, value in TINY.items() for arg in ("--model-config", f"{key}={json.dumps(value)}")],
    ]
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = [read_jsonl(tmp_path / "ddp" / "samples" / f"process-{rank}.jsonl") for rank in (0, 1)]
    assert [len(records) for records in seen] == [2, 2]
    assert all(a["query_tracks"] != b["query_tracks"] for a, b in zip(*seen))
    saved = json.loads((tmp_path / "ddp" / "training_args.json").read_text())
    assert saved["provenance"]["num_processes"] == 2 and saved["provenance"]["samples_per_step"] == 4
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
    # Each process's RNG states are checkpointed on their own, as safetensors and JSON (no pickle).
    checkpoint = {path.name for path in (tmp_path / "ddp" / "checkpoints" / "checkpoint-2").iterdir()}
    assert {f"random_states_{rank}.{kind}" for rank in (0, 1) for kind in ("json", "safetensors")} <= checkpoint


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(quality="best"), "quality must be one of off, sample, weight, not 'best'"),
        (dict(quality_width=0.0), "quality_width must be positive"),
        (dict(min_interferers=4, max_interferers=3), "need 0 <= min_interferers <= max_interferers"),
        (dict(queries_per_mixture=5, max_interferers=3), "queries_per_mixture must be between 1 and 1 \\+ max_interferers \\(4\\)"),
        (dict(silence_rate=1.5), "silence_rate must lie in \\[0, 1\\]"),
        (dict(natural_rate=-0.1, natural_corpus="corpus"), "natural_rate must lie in \\[0, 1\\]"),
        (dict(augment_speed=1.0), "augment_speed must lie in \\[0, 1\\)"),
        (dict(augment_reverb=2.0), "augment_reverb must lie in \\[0, 1\\]"),
        (dict(lr_scheduler_type="step"), "lr_scheduler_type must be one of cosine, linear, constant_with_warmup"),
    ],
)
def test_training_arguments_validate_the_mixing_settings(tmp_path, settings, message):
    """The mixing settings are checked once, by TrainingArguments.validate (MixingConfig trusts them)."""
    from clearsep_data.training import TrainingArguments, TrainingError

    with pytest.raises(TrainingError, match=message):
        TrainingArguments(datasets=["tracks"], output_dir=str(tmp_path), **settings).validate()
