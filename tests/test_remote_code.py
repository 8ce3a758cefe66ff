"""A saved or pushed model runs with transformers alone: Auto classes, the feature extractor and the pipeline.

The decisive test runs a fresh interpreter in which every ``clearsep_data`` import raises (a ``sys.meta_path``
blocker placed before the editable install's finder), and loads the model from a local folder and from a model
repository on the local Hub server with ``trust_remote_code=True``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, pipeline
from typer.testing import CliRunner

from clearsep_data import AudioSourceSeparationPipeline, ClearSepConfig, ClearSepFeatureExtractor, ClearSepModel
from clearsep_data.cli import app

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"/m/09x0r": "Speech", "/m/05tny_": "Bark"}
TINY = dict(sampling_rate=8000, n_fft=128, hop_length=40, channels=[4, 8], query_dim=8, segment_seconds=1.0)
REPO_ID = "clearsep/remote-code"
SHIPPED = sorted(path.name for path in (ROOT / "modeling").glob("*.py") if path.name != "__init__.py")

pytestmark = pytest.mark.usefixtures("one_thread")


def mixture(seconds: float = 2.5, rate: int = 11025, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> ClearSepModel:
    torch.manual_seed(0)
    config = ClearSepConfig(label_mids=list(LABELS), id2label=dict(enumerate(LABELS.values())), **TINY)
    return ClearSepModel(config).eval()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    model.save_pretrained(folder)
    return folder


def test_save_pretrained_ships_the_code_and_names_it(model_dir):
    assert sorted(path.name for path in model_dir.glob("*.py")) == SHIPPED  # every file of modeling/ but __init__
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_clearsep.ClearSepConfig", "AutoModel": "modeling_clearsep.ClearSepModel"}
    assert config["custom_pipelines"] == {
        "audio-source-separation": {"impl": "pipeline_clearsep.AudioSourceSeparationPipeline", "pt": ["AutoModel"], "type": "audio"}
    }  # fmt: skip
    preprocessor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert preprocessor["auto_map"] == {"AutoFeatureExtractor": "feature_extraction_clearsep.ClearSepFeatureExtractor"}
    assert (preprocessor["sampling_rate"], preprocessor["chunk_length"]) == (8000, 8000)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_import_each_other_relatively_and_third_party_packages_only(name):
    tree = ast.parse((ROOT / "modeling" / name).read_text(encoding="utf-8"))
    absolute = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    absolute |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert {module.split(".")[0] for module in absolute} <= {"__future__", "collections", "dataclasses", "itertools",
        "os", "pathlib", "typing", "numpy", "torch", "transformers", "huggingface_hub", "safetensors", "soxr"}  # fmt: skip
    assert {f"{module}.py" for module in relative} <= set(SHIPPED)


def test_feature_extractor_is_saved_with_the_model_and_loads_with_auto(model, model_dir):
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    assert type(extractor) is ClearSepFeatureExtractor
    assert {**model.feature_extractor.to_dict(), "auto_map": extractor.auto_map} == extractor.to_dict()
    config = model.config
    assert extractor.chunk_quantum == config.sample_quantum == 160
    assert extractor.chunk_context % extractor.chunk_quantum == 0
    assert extractor.chunk_context >= config.receptive_field_frames * config.hop_length + config.n_fft


def test_chunk_plan_tiles_the_input_on_the_model_grid(model):
    extractor = model.feature_extractor
    plan = extractor.chunk_plan(20_000)
    assert [(start, end) for _, _, start, end in plan] == [(0, 8000), (8000, 16000), (16000, 20000)]
    assert all(start % extractor.chunk_quantum == 0 for start, _, _, _ in plan)
    context = extractor.chunk_context
    assert plan[1][:2] == (8000 - context, min(20_000, 16000 + context))
    assert extractor.chunk_plan(20_000, chunk_seconds=10.0) == [(0, 20_000, 0, 20_000)]


def test_pipeline_separates_one_waveform_per_query_at_the_model_rate(model):
    separator = pipeline("audio-source-separation", model=model)
    audio = mixture()
    result = separator({"array": audio, "sampling_rate": 11025}, queries=["Speech", "Bark"])
    assert result["sampling_rate"] == 8000 and len(result["audio"]) == 2
    input_values = model.feature_extractor(audio, sampling_rate=11025)["input_values"][0]
    expected = model.separate(input_values, ["Speech", "Bark"])
    for track, reference in zip(result["audio"], expected, strict=True):
        assert track.shape == input_values.shape and track.dtype == np.float32
        np.testing.assert_allclose(track, reference, atol=1e-6)

    bare = separator(input_values, queries="Bark", chunk_seconds=0.5)  # separate()'s keywords pass through
    np.testing.assert_allclose(bare["audio"][0], expected[1], atol=1e-4)
    inputs = [torch.from_numpy(audio), {"raw": audio[:, :5000], "sampling_rate": 11025}]
    results = separator(inputs, sampling_rate=11025, queries=["Speech"], batch_size=2)  # one separate() call
    assert [item["audio"][0].shape for item in results] == [input_values.shape, (round(5000 * 8000 / 11025),)]
    np.testing.assert_allclose(results[0]["audio"][0], expected[0], atol=1e-6)
    np.testing.assert_allclose(results[1]["audio"][0], separator(inputs[1], queries=["Speech"])["audio"][0], atol=1e-6)
    with pytest.raises(ValueError, match="pass queries="):
        separator(input_values)
    with pytest.raises(ValueError, match="needs 'array'"):
        separator({"array": audio}, queries=["Speech"])


def test_pipeline_from_a_folder_with_clearsep_installed(model, model_dir):
    separator = pipeline("audio-source-separation", model=str(model_dir), pipeline_class=AudioSourceSeparationPipeline)
    assert type(separator.model) is ClearSepModel and type(separator.feature_extractor) is ClearSepFeatureExtractor
    audio = mixture()[0]
    result = separator({"array": audio, "sampling_rate": 11025}, queries=["Bark"])
    input_values = model.feature_extractor(audio, sampling_rate=11025)["input_values"][0]
    np.testing.assert_allclose(result["audio"][0], model.separate(input_values, ["Bark"])[0], atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code=True"):  # transformers: custom_pipelines come first
        pipeline("audio-source-separation", model=str(model_dir))


BLOCKED_RUN = """
import importlib.abc, json, sys
from pathlib import Path

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "clearsep_data":
            raise ImportError(f"{name} is blocked")

sys.meta_path.insert(0, Blocker())
try:
    import clearsep_data
except ImportError:
    pass
else:
    raise SystemExit("clearsep_data was importable")

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor, pipeline

torch.set_num_threads(1)
audio = np.load(sys.argv[1])
report = {}
for source in sys.argv[2:]:
    model = AutoModel.from_pretrained(source, trust_remote_code=True)
    extractor = AutoFeatureExtractor.from_pretrained(source, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=True)
    separator = pipeline("audio-source-separation", model=source, trust_remote_code=True)
    result = separator({"array": audio, "sampling_rate": 11025}, queries=["Speech", "Bark"])
    report[source] = {
        "classes": [type(thing).__module__ for thing in (model, extractor, processor, separator, separator.model)],
        "separate": model.separate(audio, ["Speech", "/m/05tny_"], sampling_rate=11025).tolist(),
        "pipeline": [track.tolist() for track in result["audio"]],
        "sampling_rate": result["sampling_rate"],
    }
for snippet in sorted(Path().glob("card_*.py")):  # the model card's usage blocks, with mixture.wav beside them
    namespace = {}
    exec(snippet.read_text(), namespace)
    report[snippet.name] = [np.shape(track) for track in namespace["tracks"]]
report["leaked"] = sorted(name for name in sys.modules if name.startswith("clearsep_data"))
print(json.dumps(report))
"""


def test_model_folder_and_hub_repo_load_without_clearsep(model, model_dir, hub, tmp_path):
    stage = tmp_path / "stage"  # what `clearsep-data push model` uploads
    result = CliRunner().invoke(app, ["push", "model", str(model_dir), "--repo-id", REPO_ID, "--dry-run", "--stage-dir", str(stage)])
    assert result.exit_code == 0, result.output
    hub.publish(stage, "model", REPO_ID)
    audio = mixture()
    np.save(tmp_path / "audio.npy", audio)
    sf.write(tmp_path / "mixture.wav", audio.T, 11025)
    blocks = re.findall(r"```python\n(.*?)```", (stage / "README.md").read_text(), flags=re.DOTALL)
    assert len(blocks) == 2 and 'pipeline("audio-source-separation"' in blocks[0]
    for index, block in enumerate(blocks):
        (tmp_path / f"card_{index}.py").write_text(block)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    script = textwrap.dedent(BLOCKED_RUN)
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "audio.npy"), str(model_dir), REPO_ID],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report.pop("leaked") == []

    expected = model.separate(audio, ["Speech", "Bark"], sampling_rate=11025)
    input_values = model.feature_extractor(audio, sampling_rate=11025)["input_values"][0]
    expected_pipeline = model.separate(input_values, ["Speech", "Bark"])
    for source in (str(model_dir), REPO_ID):
        loaded = report[source]
        assert all(module.startswith("transformers_modules.") for module in loaded["classes"]), loaded["classes"]
        np.testing.assert_allclose(np.array(loaded["separate"]), expected, atol=1e-5)
        np.testing.assert_allclose(np.array(loaded["pipeline"]), expected_pipeline, atol=1e-5)
        assert loaded["sampling_rate"] == 8000
    decoded = report["card_0.py"]  # the pipeline: ffmpeg decodes the file at the model's rate
    assert len(decoded) == 2 and all(abs(length - input_values.shape[0]) <= 1 for (length,) in decoded)
    assert report["card_1.py"] == [[audio.shape[1]]] * 2  # separate(): at the input's rate and length
