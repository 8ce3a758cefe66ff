"""Reliability faults of model loading, provenance and training checkpoints, each with the behaviour that fixes it."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.track_maker import load_model, model_tag
from clearsep_data.modeling import ClearSepConfig, ClearSepLoadError, ClearSepModel
from clearsep_data.modeling.loading import is_hub_id

LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark", "/m/07pggtn": "Chirp, tweet"}
TINY = dict(
    sampling_rate=8000, n_fft=128, hop_length=40, channels=[4, 8], encoder_blocks=1, frequency_patch=2,
    query_dim=8, segment_seconds=1.0,
)  # fmt: skip
WEIGHTS, CONFIG = "model.safetensors", "config.json"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = ClearSepConfig(label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), **TINY)
    path = tmp_path_factory.mktemp("model")
    ClearSepModel(config).save_pretrained(path)
    return path


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges where this process has ``path`` memory-mapped (Linux; none elsewhere)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    ranges = []
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path.resolve()):
            low, high = (int(address, 16) for address in fields[0].split("-"))
            ranges.append((low, high))
    return ranges


# --------------------------------------------------------------------------------------------- owned memory
def test_loaded_weights_live_in_owned_aligned_memory(model_dir):
    mixture = torch.randn(1, TINY["sampling_rate"])
    query_ids = torch.tensor([[0, 2]])
    for model in (ClearSepModel.from_pretrained(model_dir), load_model(str(model_dir), torch.device("cpu"))[0]):
        mapped = file_mappings(model_dir / WEIGHTS)
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            address = tensor.untyped_storage().data_ptr()
            assert address % 64 == 0 and tensor.data_ptr() % 64 == 0, name
            assert not any(low <= address < high for low, high in mapped), f"{name} points into the weights file"
        with torch.no_grad():
            loaded = model.eval()(mixture, query_ids).separated_values
            copied = copy.deepcopy(model)(mixture, query_ids).separated_values
        assert torch.equal(loaded, copied)


# --------------------------------------------------------------------------------------------- bad weights
def drop_decoder(folder: Path) -> None:
    weights = load_file(folder / WEIGHTS)
    save_file({k: v for k, v in weights.items() if not k.startswith("decoder.")}, folder / WEIGHTS)


def add_tensor(folder: Path) -> None:
    save_file({**load_file(folder / WEIGHTS), "decoder.extra.weight": torch.zeros(2)}, folder / WEIGHTS)


def cut_in_half(folder: Path) -> None:
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])


def widen_queries(folder: Path) -> None:
    config = json.loads((folder / CONFIG).read_text())
    (folder / CONFIG).write_text(json.dumps({**config, "query_dim": 12}))


def remove_config(folder: Path) -> None:
    (folder / CONFIG).unlink()


def pickle_only(folder: Path) -> None:
    torch.save(load_file(folder / WEIGHTS), folder / "pytorch_model.bin")
    (folder / WEIGHTS).unlink()


BREAKAGES = {
    "missing tensors": (drop_decoder, r"model\.safetensors does not match .*config\.json: \d+ tensor\(s\) missing "
                        r"\(decoder\.blocks\.0\.conv1\.weight, decoder\.blocks\.0\.conv2\.weight, .*, \.\.\.\)"),
    "unexpected tensor": (add_tensor, r"model\.safetensors does not match .*: 1 unexpected tensor\(s\) "
                          r"\(decoder\.extra\.weight\)"),
    "truncated": (cut_in_half, r"model\.safetensors is not a complete safetensors file"),
    "shape": (widen_queries, r"model\.safetensors does not match .*config\.json: 5 tensor\(s\) of another shape "
              r"\(decoder\.blocks\.0\.film1\.projection\.weight \[16, 8\] in the weights, \[16, 12\] for the config"),
    "no config": (remove_config, r"model folder .* has no config\.json"),
    "pickle only": (pickle_only, r"has no model\.safetensors \(pytorch_model\.bin not loaded: only safetensors"),
}  # fmt: skip


def broken_copy(model_dir: Path, tmp_path: Path, breakage: str) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(model_dir, folder)
    BREAKAGES[breakage][0](folder)
    return folder


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_bad_weights_are_refused_with_one_clear_error(model_dir, tmp_path, breakage):
    folder = broken_copy(model_dir, tmp_path, breakage)
    with pytest.raises(ClearSepLoadError, match=BREAKAGES[breakage][1]) as caught:
        ClearSepModel.from_pretrained(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
    assert Path(caught.traceback[-1].path).name == "loading.py"  # raised by our checks, not deep in a library
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


MISSING_FOLDERS = ["./no-such-model", "/nowhere/no-such-model", "~/no-such-model", "runs/a/no-such-model"]


@pytest.mark.parametrize("path", MISSING_FOLDERS)
def test_a_missing_local_folder_is_not_taken_for_a_hub_id(path):
    assert not is_hub_id(path)
    with pytest.raises(ClearSepLoadError, match=r"^model folder .*no-such-model does not exist$"):
        ClearSepModel.from_pretrained(path)


def test_hub_ids_are_name_or_org_slash_name(model_dir, monkeypatch):
    assert is_hub_id("clearsep/clearsep-small") and is_hub_id("clearsep-small")
    monkeypatch.chdir(model_dir.parent)
    assert not is_hub_id(model_dir.name)  # an existing folder is a folder
    assert not is_hub_id(model_dir)  # so is a Path


@pytest.mark.parametrize("breakage", ["missing tensors", "pickle only"])
def test_build_with_a_broken_model_prints_one_error_line(model_dir, tmp_path, breakage):
    folder = broken_copy(model_dir, tmp_path, breakage)
    result = CliRunner().invoke(app, ["build", str(tmp_path), str(tmp_path / "out"), "--model", str(folder)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and re.match(rf"error: .*{BREAKAGES[breakage][1]}", lines[0]), result.output


def test_build_with_a_missing_model_folder_prints_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["build", str(tmp_path), str(tmp_path / "out"), "--model", "./no-such-model"])
    assert result.exit_code == 1 and result.output.strip() == "error: model folder no-such-model does not exist"


# --------------------------------------------------------------------------------------------- provenance
def test_model_tag_hashes_config_and_weights(model_dir, tmp_path):
    model = ClearSepModel.from_pretrained(model_dir)
    tag = model_tag(str(model_dir), model)
    assert re.fullmatch(rf"{re.escape(str(model_dir))}@sha256:[0-9a-f]{{16}}", tag)
    permuted = tmp_path / "permuted"
    shutil.copytree(model_dir, permuted)
    config = json.loads((permuted / CONFIG).read_text())
    (permuted / CONFIG).write_text(json.dumps({**config, "label_mids": config["label_mids"][::-1]}))
    assert model_tag(str(permuted), model).split("@")[1] != tag.split("@")[1]
    assert model_tag(str(model_dir), model) == tag


# --------------------------------------------------------------------------------------------- checkpoints
class Planted:
    """Unpickling it creates ``marker``: what a tampered checkpoint file could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


PICKLE_SUFFIXES = (".pkl", ".bin", ".pt", ".pth")


def test_checkpoints_hold_no_pickle_and_resume_exactly_without_unpickling(track_dataset, tmp_path):
    from clearsep_data.training import TrainingArguments, TrainingError, train

    args = TrainingArguments(
        datasets=[str(track_dataset)], output_dir=str(tmp_path / "run"), batch_size=2, segment_seconds=0.25,
        steps=4, grad_accum=2, save_every=2, eval_every=0, log_every=1, progress=False, lr=3e-3,
        model_config=dict(channels=[4, 8], query_dim=8, encoder_blocks=1, n_fft=256, hop_length=128),
    )  # fmt: skip
    train(args)
    uninterrupted = load_file(tmp_path / "run" / WEIGHTS)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not [path for path in checkpoints.rglob("*") if path.suffix in PICKLE_SUFFIXES]
    shutil.rmtree(checkpoints / "checkpoint-4")  # as if killed after step 3
    marker = tmp_path / "unpickled"
    for name in ("random_states_0.pkl", "custom_checkpoint_0.pkl"):  # accelerate's names for RNG and scheduler
        torch.save(Planted(marker), checkpoints / "checkpoint-2" / name)

    assert train(args).resumed_from == 2 and not marker.exists()
    resumed = load_file(tmp_path / "run" / WEIGHTS)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)

    (checkpoints / "checkpoint-4" / "optimizer.json").unlink()  # as a checkpoint of an earlier version
    with pytest.raises(TrainingError, match="checkpoint-4: no optimizer.json; checkpoints of earlier versions"):
        train(args)
