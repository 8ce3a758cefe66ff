"""Stage a track dataset as a Hub dataset repository: re-sharded parquet, plots, stats and card."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clearsep_data.demo_corpus import GENERATOR as DEMO_GENERATOR, demo_corpus_settings
from clearsep_data.hub.staging import (
    StagedRepo,
    StagingError,
    flatten,
    is_hub_id,
    prepare_stage_dir,
    read_json,
    redact_secrets,
    render_card,
    write_json,
)

AUDIOSET_DOWNLOAD_PAGE = "https://research.google.com/audioset/download.html"
DEFAULT_LICENSE = "other"
"""AudioSet-derived audio has no single licence (labels CC BY 4.0, audio owned by YouTube uploaders)."""
DATASET_TAGS = ["audio", "source-separation", "audioset", "sound-event", "clearsep"]
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]  # fmt: skip
COPIED_FILES = ("skips.jsonl",)
"""Files of the build folder published as they are (the JSON provenance files are published redacted)."""
BUILD_SUMMARY_OMITTED = ("accepted_per_class", "rejected_per_class", "splits", "skip_reasons", "skipped")
"""Entries of ``build.json``/``summary.json`` the card shows from the data itself, or as their own table."""


def size_category(num_examples: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if num_examples < bound:
            return name
    return "n>100M"


def stage_dataset(
    dataset_dir: str | os.PathLike,
    stage_dir: str | os.PathLike,
    *,
    repo_id: str,
    license: str = DEFAULT_LICENSE,
    max_shard_size: str | int = "500MB",
    pretty_name: str | None = None,
    corpus_id: str | None = None,
    model_id: str | None = None,
) -> StagedRepo:
    """Write the repository of the track dataset in ``dataset_dir`` to ``stage_dir``.

    The repository holds ``data/{split}-XXXXX-of-YYYYY.parquet`` (re-sharded to ``max_shard_size``,
    audio bytes embedded), ``plots/*.png``, ``stats.json``, the build's provenance files and a
    ``README.md`` dataset card whose YAML lets ``load_dataset(repo_id)`` read the accepted tracks and
    ``load_dataset(repo_id, "rejected")`` the rejected ones. The card names the corpus and the separation model
    by the Hub ids ``corpus_id`` / ``model_id`` when given, never by a local path.
    """
    from datasets.utils.py_utils import convert_file_size_to_int
    from huggingface_hub import DatasetCard

    from clearsep_data.stats import PROVENANCE_FILES, DatasetFiles, StatsError, compute_stats, open_shard
    from clearsep_data.stats_plots import write_plots
    from clearsep_data.build_folder import dataset_card_data, write_shards

    source = Path(dataset_dir)
    if not source.is_dir():
        raise StagingError(f"{source}: not a folder (push a dataset written by `clearsep-data build`)")
    try:
        max_shard_bytes = convert_file_size_to_int(max_shard_size)
    except ValueError:
        raise StagingError(f"--max-shard-size: {max_shard_size!r} is not a size like '500MB'") from None
    stage = prepare_stage_dir(stage_dir)
    try:
        shards = {split: [Path(path) for path in paths] for split, paths in DatasetFiles.locate(source).shards().items()}
        features = _common_features({path: open_shard(path)[1] for paths in shards.values() for path in paths})
        split_info = {}
        (stage / "data").mkdir()
        for split, paths in shards.items():
            split_info[split] = write_shards(paths, stage / "data", split, features, max_shard_bytes)
            _check_audio_embedded(sorted((stage / "data").glob(f"{split}-*.parquet")))
        for name in PROVENANCE_FILES:
            if (source / name).is_file():
                write_json(stage / name, redact_secrets(read_json(source / name)))
        for name in COPIED_FILES:
            if (source / name).is_file() and (source / name).stat().st_size:
                shutil.copy2(source / name, stage / name)
        stats = compute_stats(stage)
    except StatsError as error:
        raise StagingError(str(error)) from None
    stats.source = repo_id
    write_plots(stats, stage / "plots")
    write_json(stage / "stats.json", stats.to_dict())
    card_data = dataset_card_data(
        features,
        split_info,
        license=license,
        pretty_name=pretty_name or "ClearSep single-source tracks",
        task_categories=["audio-to-audio"],
        tags=DATASET_TAGS,
        size_categories=[size_category(sum(info["num_examples"] for info in split_info.values()))],
        **({"license_name": "audioset-mixed", "license_link": AUDIOSET_DOWNLOAD_PAGE} if license == "other" else {}),
    )
    values = _card_values(stats, features, repo_id, has_skips=(stage / "skips.jsonl").exists(), corpus_id=corpus_id, model_id=model_id)
    card = render_card(DatasetCard, card_data, "dataset_card.md", **values)
    (stage / "README.md").write_text(str(card), encoding="utf-8")
    return StagedRepo(stage, "dataset", repo_id, replaced_patterns=("data/*.parquet", "plots/*.png"))


def _common_features(features_by_path: dict):
    """The features all shards share; a clear error naming the first shard that differs."""
    (first_path, first), *others = features_by_path.items()
    for path, features in others:
        if features != first:
            raise StagingError(f"{path}: features differ from {first_path.name}'s ({features} vs {first})")
    return first


def _check_audio_embedded(paths: list[Path]) -> None:
    """Every row must carry its audio bytes: a path-only row would be unloadable from the Hub.

    Read from the parquet column statistics (null counts), so no audio is loaded.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for path in paths:
        metadata = pq.read_metadata(path)
        counts = []
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            for column in range(row_group.num_columns):
                chunk = row_group.column(column)
                if chunk.path_in_schema == "audio.bytes":
                    statistics = chunk.statistics
                    counts.append(statistics.null_count if statistics is not None and statistics.has_null_count else None)
        if None in counts or not counts:
            audio = pq.read_table(path, columns=["audio"]).column("audio")
            missing = pc.sum(pc.is_null(pc.struct_field(audio, "bytes"))).as_py() or 0
        else:
            missing = sum(counts)
        if missing:
            raise StagingError(f"{path}: {missing} row(s) have no audio bytes; the dataset must embed its audio")


def _card_values(stats, features, repo_id: str, has_skips: bool, corpus_id: str | None, model_id: str | None) -> dict:
    """The template's variables, computed from the statistics and the build record."""
    from clearsep_data.tracks import REJECTED_SPLIT, TRACK_FIELDS
    from clearsep_data.stats import SummaryTable, summary_tables

    tables = {table.title: table for table in summary_tables(stats)}
    build = stats.provenance.get("build.json", {})
    if isinstance(build.get("fingerprint"), dict):  # `clearsep-data build`: settings, then the counts they gave
        build = {**build["fingerprint"], **build.get("summary", {})}
    record = {**build, **stats.provenance.get("summary.json", {})}
    demo = demo_corpus_settings(record["corpus"]) if isinstance(record.get("corpus"), str) else None
    public = public_names(record, corpus_id, model_id, demo)
    build_rows = [[key, public(value)] for key, value in flatten(_without(record, BUILD_SUMMARY_OMITTED)) if value != ""]
    provenance = tables["Provenance"]
    provenance = SummaryTable(provenance.title, provenance.columns, [[c, public(v), n] for c, v, n in provenance.rows])
    skip_reasons = record.get("skip_reasons") or {}
    accepted_classes = [c for c in stats.classes if c.accepted] or stats.classes
    return {
        "repo_id": repo_id,
        "num_accepted": stats.num_accepted,
        "num_rejected": stats.num_rejected,
        "hours_accepted": sum(s.hours for name, s in stats.splits.items() if name != REJECTED_SPLIT),
        "num_classes": len(accepted_classes),
        "sampling_rate": stats.sampling_rate,
        "example_class": accepted_classes[0].label_name if accepted_classes else "",
        "example_mid": accepted_classes[0].label if accepted_classes else "",
        "build_table": SummaryTable("Build", ["setting", "value"], build_rows),
        "has_summary": "summary.json" in stats.provenance,
        "has_skips": has_skips,
        "skip_table": SummaryTable("Skipped clips", ["reason", "clips"], [[r, str(n)] for r, n in skip_reasons.items()]),
        "provenance_table": provenance,
        "corpus": public(record["corpus"]) if isinstance(record.get("corpus"), str) else None,
        "synthetic": demo is not None,
        "content_tables": [tables[title] for title in ("Splits", "Tracks per class", "Origins")],
        "quality_tables": [tables[title] for title in ("Quality (dB)", "Reject reasons") if title in tables],
        "field_table": SummaryTable(
            "Fields",
            ["field", "type", "description"],
            [[f"`{name}`", _feature_type(features[name]), TRACK_FIELDS.get(name, "")] for name in features],
        ),
    }


def public_names(record: dict, corpus_id: str | None, model_id: str | None, demo: dict | None):
    """A function that shows a value of the build record without local paths: the corpus as ``corpus_id``, or
    "synthetic demo corpus" for the demo, or its folder's name; the model (``path@sha256:...``) as ``model_id``
    or "local model", each keeping the weights' digest; an ontology or segments file by its name."""
    replacements = {}
    corpus = record.get("corpus")
    if isinstance(corpus, str) and not is_hub_id(corpus):
        seed = f", seed {demo['seed']}" if demo and "seed" in demo else ""
        replacements[corpus] = corpus_id or (f"synthetic demo corpus ({DEMO_GENERATOR}{seed})" if demo else f"local corpus '{Path(corpus).name}'")
    elif isinstance(corpus, str) and corpus_id:
        replacements[corpus] = corpus_id
    for key in ("ontology", "segments"):
        if isinstance(record.get(key), str) and os.sep in record[key]:
            replacements[record[key]] = Path(record[key]).name
    model = record.get("model")
    if isinstance(model, str) and "@" in model:
        path = model.rsplit("@", 1)[0]
        if model_id or not is_hub_id(path):
            replacements[path] = model_id or "local model"

    def public(value: str) -> str:
        for local, shown in replacements.items():
            if value == local or value.startswith(local + "@"):
                return shown + value[len(local):]
        return value

    return public


def _without(record: dict, omitted: tuple[str, ...]) -> dict:
    return {
        key: _without(value, omitted) if isinstance(value, dict) else value
        for key, value in record.items()
        if key not in omitted
    }


def _feature_type(feature) -> str:
    from datasets import Audio, Value

    if isinstance(feature, Audio):
        return f"audio ({feature.sampling_rate} Hz)" if feature.sampling_rate else "audio"
    if isinstance(feature, Value):
        return feature.dtype
    inner = getattr(feature, "feature", None)
    return f"list of {_feature_type(inner)}" if inner is not None else type(feature).__name__
