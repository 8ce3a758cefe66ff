"""The Hub release: staged dataset/model repositories, their cards, the upload calls, and loading back."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REJECTED_ROWS, TRAIN_ROWS, track_rows, write_track_dataset
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.hub.dataset import stage_dataset
from clearsep_data.hub.model import stage_model
from clearsep_data.hub.staging import StagingError
from clearsep_data.tracks import TRACK_FIELDS, load_tracks, track_features

TOKEN = "hf_ClearSepTestTokenNeverPublish0123"
CODE_FILES = sorted(path.name for path in (Path(__file__).parents[1] / "modeling").glob("*.py") if path.name != "__init__.py")
EVAL = {
    "model": "runs/small",
    "dataset": "clearsep/audioset-eval",
    "split": "eval",
    "num_clips": 10,
    "num_items": 24,
    "metrics": {"sdr": 5.1, "si_sdr": 4.2, "sdri": 6.0, "si_sdri": 7.254},
    "per_class": {"Speech": {"mid": "/m/09x0r", "count": 12, "sdr": 5.0, "si_sdr": 4.0, "sdri": 6.1, "si_sdri": 7.0}},
    "mixture": {"sdr": -0.9, "si_sdr": -3.05, "sdri": 0.0, "si_sdri": 0.0},
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny ClearSepModel saved with save_pretrained, with eval.json and training_args.json."""
    import torch

    from clearsep_data import ClearSepConfig, ClearSepModel

    folder = tmp_path_factory.mktemp("model")
    config = ClearSepConfig(
        label_mids=["/m/09x0r", "/m/05tny_"], id2label={0: "Speech", 1: "Bark"}, channels=[4, 8], query_dim=8, n_fft=256, hop_length=64
    )
    torch.manual_seed(0)
    ClearSepModel(config).save_pretrained(folder)
    (folder / "eval.json").write_text(json.dumps(EVAL))
    training = {"datasets": ["clearsep/tracks", str(folder)], "preset": "small", "steps": 100, "lr": 0.001,
                "hub_token": TOKEN, "provenance": {"versions": {"torch": torch.__version__}, "wandb_api_key": "k"}}  # fmt: skip
    (folder / "training_args.json").write_text(json.dumps(training))
    return folder


@pytest.fixture(scope="module")
def many_tracks(tmp_path_factory):
    """150 accepted + 2 rejected tracks: enough rows for several 64-row batches, hence several shards."""
    return write_track_dataset(tmp_path_factory.mktemp("many") / "tracks", train=TRAIN_ROWS * 30)


def read_rows(paths):
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(path) for path in paths]).to_pylist()


# --- the staged dataset repository -------------------------------------------------------------


def test_staged_dataset_is_resharded_and_keeps_every_row(many_tracks, tmp_path):
    track_dataset = many_tracks
    staged = stage_dataset(track_dataset, tmp_path / "stage", repo_id="clearsep/tracks", max_shard_size="100KB")

    shards = sorted((staged.path / "data").glob("train-*.parquet"))
    assert len(shards) > 1
    assert [path.name for path in shards] == [f"train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    source = read_rows([track_dataset / "data/train-00000-of-00001.parquet"])
    assert read_rows(shards) == source  # same rows, same order, audio bytes embedded
    assert all(row["audio"]["bytes"] for row in source)
    assert read_rows(sorted((staged.path / "data").glob("rejected-*.parquet"))) == read_rows(
        [track_dataset / "data/rejected-00000-of-00001.parquet"]
    )
    files = dict(staged.files())
    assert {"README.md", "stats.json", "build.json", "plots/quality_histograms.png", "plots/tracks_per_class.png"} <= set(files)
    assert staged.total_size == sum(files.values())
    stats = json.loads((staged.path / "stats.json").read_text())
    assert stats["source"] == "clearsep/tracks" and stats["num_accepted"] == 30 * len(TRAIN_ROWS)


def test_dataset_card_metadata_is_valid_for_hub_and_datasets(track_dataset, tmp_path):
    from datasets import load_dataset
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    staged = stage_dataset(track_dataset, tmp_path / "stage", repo_id="clearsep/tracks")
    card = DatasetCard.load(staged.path / "README.md")
    data = card.data
    assert data.license == "other" and data.license_link.startswith("https://research.google.com/audioset")
    assert data.task_categories == ["audio-to-audio"] and data.size_categories == ["n<1K"]
    assert {"audio", "source-separation", "audioset"} <= set(data.tags)
    configs = MetadataConfigs.from_dataset_card_data(data)
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/train-*"}]
    assert configs["rejected"]["data_files"] == [{"split": "rejected", "path": "data/rejected-*"}]  # a config of its own
    infos = DatasetInfosDict.from_dataset_card_data(data)
    assert infos["default"].features == infos["rejected"].features == track_features(16000)
    assert {name: split.num_examples for info in infos.values() for name, split in info.splits.items()} == {"train": 5, "rejected": 2}
    assert all(split.num_bytes > 0 for info in infos.values() for split in info.splits.values())
    local = {config: load_dataset(str(staged.path), config, cache_dir=str(tmp_path / "cache")) for config in ("default", "rejected")}
    assert {config: {split: len(rows) for split, rows in splits.items()} for config, splits in local.items()} == {
        "default": {"train": 5}, "rejected": {"rejected": 2}
    }

    body = card.text
    for link in ("plots/quality_histograms.png", "plots/tracks_per_class.png"):
        assert f"]({link})" in body and (staged.path / link).is_file()
    assert 'load_dataset("clearsep/tracks", split="train")' in body
    assert "| Bark | /m/05tny_ | 2 | 1 | 66.7% |" in body
    assert "| re_sdr < 10 | 2 | 100.0% |" in body
    assert "| corpus | local corpus 'demo-corpus' |" in body and "| thresholds.min_re_sdr | 10 |" in body  # from build.json
    assert "| audio is shorter than its segment | 1 |" in body
    assert "CC BY 4.0" in body and "YouTube" in body
    assert 'load_dataset("clearsep/tracks", "rejected", split="rejected")' in body
    for field in TRACK_FIELDS:
        assert f"| `{field}` |" in body


def test_dataset_card_names_hub_ids_or_the_synthetic_demo_corpus_never_local_paths(tmp_path):
    from huggingface_hub import DatasetCard

    from clearsep_data.demo_corpus import generate_demo_corpus

    corpus = tmp_path / "work" / "corpus"
    generate_demo_corpus(corpus, clips=2, eval_clips=0, seed=3, seconds=1.0, sampling_rate=8000)
    root = write_track_dataset(tmp_path / "tracks")
    record = json.loads((root / "build.json").read_text())
    record["fingerprint"].update(corpus=str(corpus), model=f"{tmp_path}/work/round-0/model@sha256:0123abcd")
    (root / "build.json").write_text(json.dumps(record))

    demo = DatasetCard.load(stage_dataset(root, tmp_path / "a", repo_id="me/tracks").path / "README.md").text
    assert "| corpus | synthetic demo corpus (clearsep-data demo-corpus, seed 3) |" in demo
    assert "| model | local model@sha256:0123abcd |" in demo and str(tmp_path) not in demo
    assert "made from the **synthetic demo corpus" in demo and "no YouTube material" in demo
    assert "YouTube id (YTID) of the source clip" not in demo and "uploaders" not in demo

    named = stage_dataset(root, tmp_path / "b", repo_id="me/tracks", corpus_id="me/demo-corpus", model_id="me/clearsep-small")
    card = DatasetCard.load(named.path / "README.md").text
    assert "| corpus | me/demo-corpus |" in card and "| model | me/clearsep-small@sha256:0123abcd |" in card
    assert str(tmp_path) not in card


def test_staged_parquet_has_the_shape_the_hub_viewer_reads(many_tracks, tmp_path, monkeypatch):
    """Embedded audio bytes, the Audio feature in the schema metadata, and row groups no larger than datasets writes
    (the viewer refuses row groups above ~300 MB): long tracks get fewer rows per row group."""
    from datasets import Audio, Features

    monkeypatch.setattr("clearsep_data.build_folder.MAX_ROW_GROUP_BYTES", 40_000)  # as if each track were long
    staged = stage_dataset(many_tracks, tmp_path / "stage", repo_id="me/tracks")
    for path in sorted((staged.path / "data").glob("*.parquet")):
        parquet = pq.ParquetFile(path)
        assert Features.from_arrow_schema(parquet.schema_arrow)["audio"] == Audio(sampling_rate=16000)
        groups = [parquet.read_row_group(index) for index in range(parquet.num_row_groups)]  # what the viewer loads
        assert all(group.nbytes <= 40_000 for group in groups) and (len(groups) > 1 or parquet.metadata.num_rows < 10)
        audio = parquet.read(columns=["audio"]).column("audio").to_pylist()
        assert all(row["bytes"] for row in audio)
    rows = sum(pq.ParquetFile(path).metadata.num_rows for path in (staged.path / "data").glob("train-*.parquet"))
    assert rows == 30 * len(TRAIN_ROWS)


def test_a_committed_block_has_row_groups_the_viewer_reads_and_every_row(tmp_path, monkeypatch):
    """The engine's blocks (its final shards, linked as they are) are cut like the staged shards, row by row."""
    from clearsep_data.build_folder import BuildFolder

    monkeypatch.setattr("clearsep_data.build_folder.MAX_ROW_GROUP_BYTES", 40_000)  # as if each track were long
    rows = track_rows(TRAIN_ROWS * 30, "train")
    folder = BuildFolder(tmp_path / "build")
    folder.work.mkdir(parents=True)
    block = folder.commit_block(0, {"train": rows}, [], {}, track_features(16000))
    parquet = pq.ParquetFile(block / "train.parquet")
    groups = [parquet.read_row_group(index) for index in range(parquet.num_row_groups)]
    assert len(groups) > 1 and all(group.nbytes <= 40_000 for group in groups)
    assert parquet.read().to_pylist() == rows


def test_license_option_and_stage_dir_rules(track_dataset, tmp_path):
    from huggingface_hub import DatasetCard

    staged = stage_dataset(track_dataset, tmp_path / "stage", repo_id="me/synthetic", license="cc-by-4.0")
    data = DatasetCard.load(staged.path / "README.md").data
    assert data.license == "cc-by-4.0" and "license_link" not in data.to_dict()
    with pytest.raises(StagingError, match="must be empty"):
        stage_dataset(track_dataset, tmp_path / "stage", repo_id="me/synthetic")
    with pytest.raises(StagingError, match="not a size"):
        stage_dataset(track_dataset, tmp_path / "other", repo_id="me/x", max_shard_size="big")


def test_dataset_without_audio_bytes_is_refused(tmp_path):
    import pyarrow as pa

    root = write_track_dataset(tmp_path / "tracks", rejected=[])
    shard = root / "data/train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    audio = table.column("audio").combine_chunks()
    path_only = pa.StructArray.from_arrays(
        [pa.nulls(len(table), pa.binary()), pa.array([f"t{i}.flac" for i in range(len(table))])], fields=list(audio.type)
    )
    pq.write_table(table.set_column(0, "audio", path_only).replace_schema_metadata(table.schema.metadata), shard)
    with pytest.raises(StagingError, match=r"train-00000-of-00001.parquet: 5 row\(s\) have no audio bytes"):
        stage_dataset(root, tmp_path / "stage", repo_id="me/x")


# --- the staged model repository ---------------------------------------------------------------


def test_staged_model_repo_and_card(model_dir, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    staged = stage_model(model_dir, tmp_path / "stage", repo_id="clearsep/clearsep-small")
    assert sorted(name for name, _ in staged.files()) == sorted([
        "README.md", "config.json", "eval.json", "model.safetensors", "preprocessor_config.json", "training_args.json",
        *CODE_FILES,
    ])  # fmt: skip
    config = json.loads((staged.path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_clearsep.ClearSepModel" and "custom_pipelines" in config
    assert (staged.path / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    training = json.loads((staged.path / "training_args.json").read_text())
    assert "hub_token" not in training and "wandb_api_key" not in training["provenance"]
    assert training["steps"] == 100

    card = ModelCard.load(staged.path / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "audio-to-audio", "apache-2.0")
    assert "custom_code" in data.tags
    assert data.datasets == ["clearsep/tracks"]  # the local path of training_args.json is not a Hub id
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "clearsep-small"
    assert {(r.metric_type, r.metric_value) for r in results} == {("sdr", 5.1), ("si_sdr", 4.2), ("sdri", 6.0), ("si_sdri", 7.25)}
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in results} == {("audio-to-audio", "clearsep/audioset-eval", "eval")}
    assert 'pipeline("audio-source-separation", model="clearsep/clearsep-small", trust_remote_code=True)' in card.text
    assert 'separator("mixture.wav", queries=["Speech", "Bark"])' in card.text
    assert 'AutoModel.from_pretrained("clearsep/clearsep-small", trust_remote_code=True)' in card.text
    assert '.separate(mixture.T, ["Speech", "Bark"], sampling_rate=rate)' in card.text
    assert "| model | 5.10 | 4.20 | 6.00 | 7.25 |" in card.text
    assert "| 1 | Bark | /m/05tny_ |" in card.text
    assert TOKEN not in card.text
    assert "| negative | yes |" in card.text and "| free text | no (needs" in card.text
    assert "| parent class | not trained |" in card.text  # this training_args.json has no parent_rate
    assert "| ontology class above the vocabulary | no (the checkpoint carries no ontology) |" in card.text


def test_staged_clap_model_lists_its_query_kinds_and_processors(tmp_path):
    from huggingface_hub import ModelCard
    from test_clap_queries import tiny_clap_folder
    from test_modeling import tiny_config

    from clearsep_data import ClearSepModel

    ontology = [{"id": "/m/animal", "name": "Animal", "child_ids": ["/m/05tny_"]}, {"id": "/m/05tny_", "name": "Bark", "child_ids": []}]
    config = tiny_config(presence_head=True, ontology=ontology)
    model = ClearSepModel.from_pretrained_clap(tiny_clap_folder(tmp_path / "clap"), config)
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "eval.json").write_text(json.dumps(
        {**EVAL, "parents": {"si_sdr_minus_child": -0.4}, "absent": {"median_level_db": -33.2}}
    ))  # fmt: skip
    (tmp_path / "model" / "training_args.json").write_text(json.dumps({"parent_rate": 0.5, "silence_rate": 0.2}))
    staged = stage_model(tmp_path / "model", tmp_path / "stage", repo_id="me/clap-sep")
    names = [name for name, _ in staged.files()]
    assert "clap/tokenizer.json" in names and "clap/preprocessor_config.json" in names
    text = ModelCard.load(staged.path / "README.md").text
    assert "| free text | yes |" in text and "| audio example | yes |" in text
    assert "parent_rate 0.5; SI-SDR -0.40 dB vs the child's own query" in text
    assert "silence_rate 0.2; presence head, gate soft; median output -33.2 dB re mixture" in text
    assert "| ontology class above the vocabulary | yes |" in text and "`present_probability` and `level_db`" in text
    assert "query_audio=[mixture.T[:, :rate]]" in text
    loaded = ClearSepModel.from_pretrained(staged.path)  # the staged repository loads, free text included
    assert loaded.separate(np.zeros(8000, np.float32) + 0.1, ["a dog barking"]).shape == (1, 8000)


def test_model_card_reports_the_real_evaluation_on_the_dataset_id_given(model_dir, tmp_path):
    """A loop's model: eval.json scored on a local corpus folder, training_args.json with the trainer's proxy."""
    import shutil

    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    folder = tmp_path / "round-2" / "model"
    shutil.copytree(model_dir, folder)
    (folder / "eval.json").write_text(json.dumps({**EVAL, "dataset": "corpus"}))
    training = json.loads((model_dir / "training_args.json").read_text())
    training["provenance"]["eval"] = {"eval_si_sdri": 16.8, "eval_sdri": 15.9, "eval_items": 64}
    training["provenance"]["best_eval"] = training["provenance"]["last_eval"] = {"eval_si_sdri": 16.8}
    (folder / "training_args.json").write_text(json.dumps(training))

    local = ModelCard.load(stage_model(folder, tmp_path / "a", repo_id="me/m").path / "README.md")
    assert "model-index" not in local.data.to_dict()  # "corpus" names no dataset on the Hub
    assert "| model | 5.10 | 4.20 | 6.00 | 7.25 |" in local.text and "On `corpus` (split `eval`)" in local.text
    card = ModelCard.load(stage_model(folder, tmp_path / "b", repo_id="me/m", dataset_id="me/demo-corpus").path / "README.md")
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {("me/demo-corpus", "me/demo-corpus", "eval")}
    assert {r.metric_type: r.metric_value for r in results}["si_sdri"] == 7.25
    for text in (local.text, card.text):
        assert "16.8" not in text and "provenance.eval" not in text  # the training-time proxy is no evaluation
    assert "On `me/demo-corpus` (split `eval`)" in card.text
    with pytest.raises(StagingError, match="--dataset-id: 'corpus' is not a Hub dataset id"):
        stage_model(folder, tmp_path / "c", repo_id="me/m", dataset_id="corpus")


def test_model_staging_refuses_unusable_folders(model_dir, tmp_path):
    import shutil

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(model_dir / "config.json", pickled)
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(StagingError, match=r"only pickled weights \(pytorch_model.bin\)"):
        stage_model(pickled, tmp_path / "a", repo_id="me/m")

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(StagingError, match="model_type is 'bert', not 'clearsep'"):
        stage_model(other, tmp_path / "b", repo_id="me/m")

    mismatched = tmp_path / "mismatched"
    shutil.copytree(model_dir, mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**config, "label_mids": ["/m/09x0r"]}))
    with pytest.raises(StagingError, match=r"mismatched/config.json: not a valid ClearSep config: .*label_mids has 1"):
        stage_model(mismatched, tmp_path / "c", repo_id="me/m")

    bad_eval = tmp_path / "bad_eval"
    shutil.copytree(model_dir, bad_eval)
    (bad_eval / "eval.json").write_text(json.dumps({"dataset": "x", "metrics": {"sdr": "high"}}))
    with pytest.raises(StagingError, match=r"eval.json: metrics \['sdr'\] are not numbers"):
        stage_model(bad_eval, tmp_path / "c", repo_id="me/m")


# --- the upload calls --------------------------------------------------------------------------


class RecordingHfApi:
    """Replaces the network methods of HfApi; records what our code passes to huggingface_hub."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi, get_token

        self.calls = []
        recorder = self

        def create_repo(api, repo_id, **kwargs):
            recorder.calls.append(("create_repo", repo_id, kwargs, api.token, get_token()))
            recorder.endpoint = api.endpoint
            return f"https://hub.test/{kwargs.get('repo_type')}s/{repo_id}"

        def create_branch(api, repo_id, **kwargs):
            recorder.calls.append(("create_branch", repo_id, kwargs, api.token, get_token()))

        def upload_folder(api, **kwargs):
            from pathlib import Path

            folder = Path(kwargs["folder_path"])
            snapshot = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
            recorder.calls.append(("upload_folder", kwargs["repo_id"], kwargs, api.token, get_token()))
            recorder.uploaded = snapshot
            return type("CommitInfo", (), {"commit_url": f"https://hub.test/{kwargs['repo_id']}/commit/abc"})()

        for name, method in (("create_repo", create_repo), ("create_branch", create_branch), ("upload_folder", upload_folder)):
            monkeypatch.setattr(HfApi, name, method)


def test_push_dataset_passes_repo_revision_and_token_to_huggingface_hub(many_tracks, monkeypatch, caplog):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    api = RecordingHfApi(monkeypatch)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        app,
        ["push", "dataset", str(many_tracks), "--repo-id", "clearsep/tracks", "--token", TOKEN, "--private",
         "--revision", "v1", "--commit-message", "First release", "--max-shard-size", "100KB"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [call[0] for call in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    (_, repo_id, repo_kwargs, repo_token, _), (_, _, branch_kwargs, _, _), (_, upload_id, upload, upload_token, _) = api.calls
    assert repo_id == upload_id == "clearsep/tracks"
    assert repo_kwargs == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert branch_kwargs == {"branch": "v1", "repo_type": "dataset", "exist_ok": True}
    assert repo_token == upload_token == TOKEN
    assert (upload["repo_type"], upload["revision"], upload["commit_message"]) == ("dataset", "v1", "First release")
    assert set(upload["delete_patterns"]) == {"data/*.parquet", "plots/*.png"}
    uploaded = api.uploaded
    train_shards = [name for name in uploaded if name.startswith("data/train-")]
    assert len(train_shards) > 1 and "README.md" in uploaded and "stats.json" in uploaded
    assert all(TOKEN.encode() not in content for content in uploaded.values())
    assert TOKEN not in result.output and TOKEN not in caplog.text
    assert "https://hub.test/clearsep/tracks/commit/abc" in result.output


def test_push_model_uses_hf_token_and_endpoint_from_environment(model_dir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # what HF_ENDPOINT sets at import
    api = RecordingHfApi(monkeypatch)
    result = CliRunner().invoke(app, ["push", "model", str(model_dir), "--repo-id", "clearsep/clearsep-small"])
    assert result.exit_code == 0, result.output
    assert [call[0] for call in api.calls] == ["create_repo", "upload_folder"]  # main: no branch to create
    (_, _, repo_kwargs, api_token, resolved), (_, _, upload, _, _) = api.calls
    assert repo_kwargs == {"repo_type": "model", "private": None, "exist_ok": True}  # visibility left to the Hub
    assert api_token is None and resolved == TOKEN  # huggingface_hub resolves HF_TOKEN itself
    assert api.endpoint == "http://127.0.0.1:9"
    assert (upload["repo_type"], upload["revision"]) == ("model", "main")
    assert upload["commit_message"].startswith("Upload model with clearsep-data")
    assert sorted(api.uploaded) == sorted(["README.md", "config.json", "eval.json", "model.safetensors",
                                           "preprocessor_config.json", "training_args.json", *CODE_FILES])  # fmt: skip
    assert all(TOKEN.encode() not in content for content in api.uploaded.values())
    assert TOKEN not in result.output


def test_token_found_in_a_staged_file_stops_the_upload(tmp_path, monkeypatch):
    root = write_track_dataset(tmp_path / "tracks")
    (root / "build.json").write_text(json.dumps({"corpus": "x", "note": f"pushed with {TOKEN}"}))
    api = RecordingHfApi(monkeypatch)
    result = CliRunner().invoke(app, ["push", "dataset", str(root), "--repo-id", "me/x", "--token", TOKEN])
    assert result.exit_code == 1
    assert re.search(r"(README\.md|build\.json): contains the Hub token; refusing to upload it", result.output)
    assert api.calls == [] and TOKEN not in result.output


def test_dry_run_stages_and_lists_files_without_any_hub_call(track_dataset, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    def forbidden(*args, **kwargs):
        raise AssertionError("no Hub call in a dry run")

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, forbidden)
    stage = tmp_path / "stage"
    result = CliRunner().invoke(
        app, ["push", "dataset", str(track_dataset), "--repo-id", "clearsep/tracks", "--dry-run", "--stage-dir", str(stage)]
    )
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing uploaded" in result.output
    for name in ("README.md", "train-00000-of-00001.parquet", "quality_histograms.png", "stats.json"):
        assert name in result.output
    assert (stage / "data/train-00000-of-00001.parquet").is_file() and (stage / "README.md").is_file()


# --- loading back from a Hub, as users do ------------------------------------------------------


def test_dataset_loads_back_from_the_hub(hub, many_tracks, tmp_path):
    from datasets import load_dataset

    from clearsep_data.stats import StatsError, compute_stats

    staged = stage_dataset(many_tracks, tmp_path / "stage", repo_id="clearsep/tracks", max_shard_size="100KB")
    assert len(list((staged.path / "data").glob("train-*.parquet"))) > 1
    hub.publish(staged.path, "dataset", "clearsep/tracks")

    remote = {**load_dataset("clearsep/tracks"), **load_dataset("clearsep/tracks", "rejected")}
    local = {split: load_tracks(many_tracks, split) for split in ("train", "rejected")}
    assert set(remote) == set(local) == {"train", "rejected"}
    assert remote["train"].features == track_features(16000)
    for split, rows in (("train", TRAIN_ROWS * 30), ("rejected", REJECTED_ROWS)):
        assert remote[split].num_rows == len(rows)
        expected = local[split].remove_columns("audio").to_list()
        assert remote[split].remove_columns("audio").to_list() == expected
        for got, want in zip(remote[split]["audio"], local[split]["audio"]):
            got, want = got.get_all_samples(), want.get_all_samples()
            assert got.sample_rate == want.sample_rate == 16000
            np.testing.assert_array_equal(got.data.numpy(), want.data.numpy())

    streamed = list(load_dataset("clearsep/tracks", split="train", streaming=True))
    assert [row["track_id"] for row in streamed] == remote["train"]["track_id"]
    np.testing.assert_array_equal(
        streamed[-1]["audio"].get_all_samples().data.numpy(), remote["train"][-1]["audio"].get_all_samples().data.numpy()
    )

    result = CliRunner().invoke(app, ["stats", "clearsep/tracks"])
    assert result.exit_code == 0 and "150 accepted, 2 rejected" in result.output, result.output
    with pytest.raises(StatsError, match="clearsep/missing: no such dataset"):
        compute_stats("clearsep/missing")
    from_hub = compute_stats("clearsep/tracks").to_dict()
    from_folder = compute_stats(staged.path).to_dict()
    assert from_hub.pop("source") == "clearsep/tracks"
    from_folder.pop("source")
    assert from_hub == from_folder


def test_dataset_branch_revision_loads_back(hub, tmp_path):
    from datasets import load_dataset

    root = write_track_dataset(tmp_path / "tracks", train=TRAIN_ROWS[:2], rejected=[])
    staged = stage_dataset(root, tmp_path / "stage", repo_id="clearsep/tracks-rev")
    hub.publish(staged.path, "dataset", "clearsep/tracks-rev")
    smaller = stage_dataset(write_track_dataset(tmp_path / "v2", train=TRAIN_ROWS[:1], rejected=[]), tmp_path / "s2", repo_id="x/y")
    hub.publish(smaller.path, "dataset", "clearsep/tracks-rev", revision="v2")
    assert load_dataset("clearsep/tracks-rev", split="train").num_rows == 2
    assert load_dataset("clearsep/tracks-rev", split="train", revision="v2").num_rows == 1


def test_model_loads_back_from_the_hub(hub, model_dir, tmp_path):
    import torch
    from transformers import AutoModel

    from clearsep_data import ClearSepModel

    staged = stage_model(model_dir, tmp_path / "stage", repo_id="clearsep/clearsep-small")
    hub.publish(staged.path, "model", "clearsep/clearsep-small")

    local = ClearSepModel.from_pretrained(model_dir)
    remote = ClearSepModel.from_pretrained("clearsep/clearsep-small")
    auto = AutoModel.from_pretrained("clearsep/clearsep-small")
    assert type(auto) is ClearSepModel
    assert remote.config.id2label == {0: "Speech", 1: "Bark"}
    for model in (remote, auto):
        for (name, tensor), (_, expected) in zip(model.state_dict().items(), local.state_dict().items()):
            assert torch.equal(tensor, expected), name
    mixture = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    expected = local.separate(mixture, ["Speech", "Bark"], sampling_rate=16000)
    np.testing.assert_array_equal(remote.separate(mixture, ["Speech", "/m/05tny_"], sampling_rate=16000), expected)
    np.testing.assert_array_equal(auto.separate(mixture, ["Speech", "Bark"], sampling_rate=16000), expected)
