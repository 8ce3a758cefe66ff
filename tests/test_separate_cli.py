"""`clearsep-data separate`: files and folders, any rate and length, one file per query plus the residual."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.file_separation import SeparationInputError, find_jobs, output_names
from test_modeling import tiny_model, waveform

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_model().save_pretrained(folder)
    return folder


def test_separates_files_and_folders_at_their_own_rate(model_dir, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    stereo = waveform(2.7, rate=22050, channels=2)  # longer than one 2 s chunk, another rate, two channels
    sf.write(inputs / "sub" / "street.wav", stereo.T, 22050, subtype="FLOAT")
    sf.write(inputs / "park.flac", waveform(1.0, seed=3), 8000)
    (inputs / "notes.txt").write_text("not audio")
    single = tmp_path / "one.ogg"
    sf.write(single, waveform(0.6, rate=16000, seed=5), 16000)
    out = tmp_path / "out"
    argv = ["separate", str(model_dir), str(inputs), str(single), "-q", "Bark", "--query", "/m/09x0r", "--out", str(out)]
    result = CliRunner().invoke(app, [*argv, "--negative", "Chirp, tweet", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "separated 3 of 3 files" in result.output
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*.flac"))
    assert written == [
        f"{name}/{track}.flac" for name in ("one", "park", "sub/street") for track in ("bark", "m-09x0r", "residual")
    ]
    bark, rate = sf.read(out / "sub" / "street" / "bark.flac", dtype="float32")
    assert rate == 22050 and bark.shape == (stereo.shape[1],)
    # The files hold what separate() returns (within 24-bit rounding), and the residual completes the mixture.
    model = tiny_model()
    expected = model.separate(stereo, ["Bark", "/m/09x0r"], 22050, negative_queries=["Chirp, tweet"], return_residual=True)
    np.testing.assert_allclose(bark, expected.separated_values[0], atol=1e-6)
    residual = sf.read(out / "sub" / "street" / "residual.flac", dtype="float32")[0]
    np.testing.assert_allclose(residual, expected.residual, atol=1e-6)


def test_bad_inputs_get_one_line_each(model_dir, tmp_path):
    good, broken = tmp_path / "good.wav", tmp_path / "broken.wav"
    sf.write(good, waveform(0.5), 8000)
    broken.write_bytes(b"RIFF garbage")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["separate", str(model_dir), str(broken), str(good), "-q", "Bark", "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 2 and str(broken) in lines[0] and "cannot decode" in lines[0]
    assert "1 of 2 files could not be separated" in lines[1]
    assert (out / "good" / "bark.flac").is_file() and not (out / "broken").exists()

    for argv, message in [
        ([str(tmp_path / "missing.wav"), "-q", "Bark"], "missing.wav: no such file or folder"),
        ([str(good), "-q", "dog barking"], "unknown queries ['dog barking']"),
        ([str(good), "-q", "Bark", "--format", "mp3"], "--format must be one of flac, wav"),
    ]:
        result = CliRunner().invoke(app, ["separate", str(model_dir), *argv, "-o", str(out), "--no-progress"])
        assert result.exit_code == 1 and message in result.output, result.output
        assert [line.startswith("error:") for line in result.output.splitlines()].count(True) == 1


def test_jobs_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        sf.write(tmp_path / folder / "x.wav", np.zeros(100, np.float32), 8000)
    with pytest.raises(SeparationInputError, match="would both write to"):
        find_jobs([tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeparationInputError, match="empty: no audio files"):
        find_jobs([tmp_path / "empty"], tmp_path / "out")
    assert output_names(["Chirp, tweet", "chirp tweet", "Residual", "/m/09x0r"]) == [
        "chirp-tweet", "chirp-tweet-2", "residual-query", "m-09x0r",
    ]  # fmt: skip
