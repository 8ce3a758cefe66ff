"""`clearsep-data stats`: counts, quality quantiles, reject reasons and plots of a track dataset."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REJECTED_ROWS, TRAIN_ROWS, write_track_dataset
from typer.testing import CliRunner

from clearsep_data.cli import app
from clearsep_data.stats import QUALITY_FIELDS, StatsError, compute_stats, summary_tables
from clearsep_data.stats_plots import write_plots

FIELD_INDEX = {name: 2 + position for position, name in enumerate(QUALITY_FIELDS)}


def values(rows, name):
    return [row[FIELD_INDEX[name]] for row in rows if row[FIELD_INDEX[name]] is not None]


def test_counts_per_class_split_and_origin(track_dataset):
    stats = compute_stats(track_dataset)

    assert stats.sampling_rate == 16000
    assert {name: split.num_examples for name, split in stats.splits.items()} == {"train": 5, "rejected": 2}
    assert stats.splits["train"].hours == pytest.approx(5 * 10 / 3600)
    assert stats.splits["train"].files == ["data/train-00000-of-00001.parquet"]
    assert stats.splits["rejected"].download_size == (track_dataset / stats.splits["rejected"].files[0]).stat().st_size
    assert (stats.num_accepted, stats.num_rejected) == (5, 2)
    counts = {c.label_name: (c.label, c.accepted, c.rejected, c.acceptance_rate) for c in stats.classes}
    assert counts == {
        "Speech": ("/m/09x0r", 3, 0, 1.0),
        "Bark": ("/m/05tny_", 2, 1, pytest.approx(2 / 3)),
        "Siren": ("/m/03kmc9", 0, 1, 0.0),
    }
    assert stats.origins == {"train": {"separated": 4, "single_source": 1}, "rejected": {"separated": 2}}
    assert stats.reject_reasons == {"re_sdr < 10": 2, "leakage_db > -10": 1}
    assert stats.iterations == {0: 7}
    assert stats.models == {"clearsep/clearsep-small@abc123": 6}
    assert list(stats.thresholds.values()) == [7]
    assert stats.provenance["build.json"]["fingerprint"]["corpus"] == "demo-corpus"


@pytest.mark.parametrize("name", QUALITY_FIELDS)
def test_quality_distributions_match_numpy(track_dataset, name):
    stats = compute_stats(track_dataset)
    for group, rows in (("accepted", TRAIN_ROWS), ("rejected", REJECTED_ROWS)):
        expected = np.array(values(rows, name), dtype=np.float32).astype(np.float64)  # stored as float32
        dist = stats.quality[name][group]
        assert dist.count == expected.size
        assert dist.missing == len(rows) - expected.size
        assert dist.quantiles["q50"] == pytest.approx(np.median(expected))
        assert dist.quantiles["q05"] == pytest.approx(np.quantile(expected, 0.05))
        assert dist.minimum == pytest.approx(expected.min()) and dist.maximum == pytest.approx(expected.max())
        histogram = stats.histograms[name]
        assert sum(histogram.counts[group]) == expected.size
        assert histogram.edges[0] <= expected.min() and histogram.edges[-1] >= expected.max()


def test_audio_column_is_never_read(track_dataset, monkeypatch):
    read_columns = []
    original = pq.ParquetFile.read

    def spy(self, columns=None, **kwargs):
        read_columns.append(columns)
        return original(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    compute_stats(track_dataset)
    assert read_columns and all(columns is not None and "audio" not in columns for columns in read_columns)


def test_several_shards_and_no_rejected_split(tmp_path):
    root = write_track_dataset(tmp_path / "tracks", rejected=[])
    table = pq.read_table(root / "data/train-00000-of-00001.parquet")
    (root / "data/train-00000-of-00001.parquet").unlink()
    pq.write_table(table.slice(0, 2), root / "data/train-00000-of-00002.parquet")
    pq.write_table(table.slice(2), root / "data/train-00001-of-00002.parquet")

    stats = compute_stats(root)
    assert list(stats.splits) == ["train"] and stats.splits["train"].num_examples == 5
    assert len(stats.splits["train"].files) == 2
    assert stats.num_rejected == 0 and stats.reject_reasons == {}
    assert all(c.rejected == 0 and c.acceptance_rate == 1.0 for c in stats.classes)
    assert "Reject reasons" not in [table.title for table in summary_tables(stats)]
    assert "rejected" not in stats.quality["re_sdr"]


def test_plots_are_valid_pngs(track_dataset, tmp_path):
    import matplotlib.image

    paths = write_plots(compute_stats(track_dataset), tmp_path / "plots")
    assert [path.name for path in paths] == ["quality_histograms.png", "tracks_per_class.png"]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # something was drawn


def test_cli_prints_tables_and_writes_json_and_plots(track_dataset, tmp_path):
    result = CliRunner().invoke(
        app, ["stats", str(track_dataset), "--plots", str(tmp_path / "plots"), "--json", str(tmp_path / "stats.json")]
    )
    assert result.exit_code == 0, result.output
    for expected in ("5 accepted, 2 rejected", "Tracks per class", "Bark", "66.7%", "re_sdr < 10", "consistency_sisdr"):
        assert expected in result.output
    written = json.loads((tmp_path / "stats.json").read_text())
    assert written == json.loads(json.dumps(compute_stats(track_dataset).to_dict()))
    assert written["classes"][0]["acceptance_rate"] is not None
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == ["quality_histograms.png", "tracks_per_class.png"]


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(StatsError, match="no parquet shards under data/"):
        compute_stats(tmp_path / "empty")
    with pytest.raises(StatsError, match="not a dataset folder nor a Hub dataset id"):
        compute_stats(str(tmp_path / "missing" / "folder"))

    root = write_track_dataset(tmp_path / "tracks", rejected=[])
    shard = root / "data/train-00000-of-00001.parquet"
    pq.write_table(pq.read_table(shard).drop_columns(["leakage_db"]), shard)
    with pytest.raises(StatsError, match=r"train-00000-of-00001.parquet: not a track dataset shard.*leakage_db"):
        compute_stats(root)
    shard.write_bytes(b"not parquet")
    result = CliRunner().invoke(app, ["stats", str(root)])
    assert result.exit_code == 1
    assert "not a readable parquet file" in result.output and "Traceback" not in result.output
