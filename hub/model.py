"""Stage a trained ClearSepModel folder as a Hub model repository: config, code, safetensors, card.

The repository carries ClearSep's modeling code (``auto_map`` and ``custom_pipelines`` in ``config.json``, the
feature extractor in ``preprocessor_config.json``), so ``AutoModel.from_pretrained(repo, trust_remote_code=True)``
and ``pipeline("audio-source-separation", model=repo, trust_remote_code=True)`` work with transformers alone;
``library_name`` is therefore ``transformers`` and the card's usage section shows both.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from clearsep_data.hub.staging import (
    StagedRepo,
    StagingError,
    HUB_ID,
    flatten,
    is_hub_id,
    prepare_stage_dir,
    read_json,
    redact_secrets,
    render_card,
    write_json,
)

LIBRARY_NAME = "transformers"
DEFAULT_LICENSE = "apache-2.0"
CLAP_FOLDER = "clap"
"""``clearsep_data.modeling.clap_query_encoder.CLAP_SUBFOLDER`` (hub/ imports no torch)."""
MODEL_TAGS = ["audio", "source-separation", "audioset", "query-conditioned", "clearsep", "custom_code"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
PROVENANCE_FILES = ("eval.json", "training_args.json")
METRIC_NAMES = {"sdr": "SDR (dB)", "si_sdr": "SI-SDR (dB)", "sdri": "SDRi (dB)", "si_sdri": "SI-SDRi (dB)"}
TRAINING_SUMMARY_KEYS = ("datasets", "init", "preset", "steps", "batch_size", "segment_seconds", "lr", "loss",
                         "queries_per_mixture", "quality", "natural_rate", "seed")  # fmt: skip
TRAINING_CARD_OMITTED = ("eval", "best_eval", "last_eval")
"""Entries of ``training_args.json`` the card leaves out: ``provenance.eval`` (and ``best_eval``, ``last_eval``) are the
trainer's own scores, on mixtures of held-out training tracks or on the validation split it chose its checkpoint by,
not an evaluation; the card reports only ``eval.json``."""


def stage_model(
    model_dir: str | os.PathLike,
    stage_dir: str | os.PathLike,
    *,
    repo_id: str,
    license: str = DEFAULT_LICENSE,
    datasets: list[str] | None = None,
    dataset_id: str | None = None,
) -> StagedRepo:
    """Write the repository of the ``save_pretrained`` folder ``model_dir`` to ``stage_dir``.

    The repository holds ``config.json`` and the code it names (written by the installed ClearSep, see
    :func:`_write_code`), ``preprocessor_config.json``, the safetensors weights (pickled weights are
    refused), the ``clap/`` tokenizer and feature extractor of a CLAP query encoder,
    ``eval.json`` / ``training_args.json`` when present (credential-like keys removed) and a
    ``README.md`` model card with ``model-index`` results from ``eval.json``. ``datasets`` (Hub ids)
    default to the Hub ids among ``training_args.json``'s ``datasets``. ``dataset_id`` is the Hub id of the
    dataset ``eval.json`` was scored on (default: its ``dataset`` when that is a Hub id); ``model-index`` names it,
    and is left out when the evaluation set has no Hub id (a local folder's name would name no dataset).
    """
    from huggingface_hub import ModelCard, ModelCardData

    source = Path(model_dir)
    if not (source / "config.json").is_file():
        raise StagingError(f"{source}: no config.json (push a folder written by `ClearSepModel.save_pretrained`)")
    config = read_json(source / "config.json")
    if config.get("model_type") != "clearsep":
        raise StagingError(f"{source / 'config.json'}: model_type is {config.get('model_type')!r}, not 'clearsep'")
    weights = _weight_files(source)
    provenance = {name: redact_secrets(read_json(source / name)) for name in PROVENANCE_FILES if (source / name).is_file()}
    evaluation = provenance.get("eval.json")
    if evaluation is not None:
        _check_eval(evaluation, source / "eval.json")
    if dataset_id is not None and not HUB_ID.match(dataset_id):
        raise StagingError(f"--dataset-id: {dataset_id!r} is not a Hub dataset id like 'org/name'")
    eval_dataset = dataset_id or (_hub_dataset(str(evaluation["dataset"])) if evaluation else None)

    stage = prepare_stage_dir(stage_dir)
    _write_code(source, stage)
    for path in weights:
        shutil.copy2(path, stage / path.name)
    if (source / CLAP_FOLDER).is_dir():  # the CLAP tokenizer and feature extractor of query_encoder="clap"
        shutil.copytree(source / CLAP_FOLDER, stage / CLAP_FOLDER)
    for name, value in provenance.items():
        write_json(stage / name, value)

    training = provenance.get("training_args.json", {})
    if datasets is None:
        datasets = [name for name in training.get("datasets") or [] if is_hub_id(name)]
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=license,
        pipeline_tag="audio-to-audio",
        tags=MODEL_TAGS,
        datasets=datasets or None,
        model_name=model_name,
        eval_results=_eval_results(evaluation, eval_dataset) if evaluation and eval_dataset else None,
    )
    values = _card_values(config, weights, training, evaluation, repo_id, model_name)
    if evaluation:
        values["eval_dataset"] = eval_dataset or _dataset_reference(str(evaluation["dataset"]))
    card = render_card(ModelCard, card_data, "model_card.md", **values)
    (stage / "README.md").write_text(str(card), encoding="utf-8")
    return StagedRepo(stage, "model", repo_id, replaced_patterns=("*.safetensors", "model.safetensors.index.json", "*.py"))


def _write_code(source: Path, stage: Path) -> None:
    """``config.json`` of ``source`` with ``auto_map`` and ``custom_pipelines``, the code they name and the feature
    extractor, from the installed ClearSep (:meth:`ClearSepModel.save_code`, on a model without weights)."""
    import torch
    from huggingface_hub.errors import StrictDataclassError

    from clearsep_data.modeling import ClearSepConfig, ClearSepModel

    try:
        config = ClearSepConfig.from_pretrained(source)
    except (ValueError, StrictDataclassError) as error:
        reason = " ".join(str(error).split())
        raise StagingError(f"{source / 'config.json'}: not a valid ClearSep config: {reason}") from None
    with torch.device("meta"):
        model = ClearSepModel(config)
    model.save_code(stage)


def _weight_files(source: Path) -> list[Path]:
    """``model.safetensors``, or a safetensors index and every shard it names; never pickles."""
    index = source / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        missing = [name for name in shards if not (source / name).is_file()]
        if not shards or missing:
            raise StagingError(f"{index}: shard(s) {missing or '(none listed)'} missing from {source}")
        return [index, *(source / name for name in shards)]
    if (source / "model.safetensors").is_file():
        return [source / "model.safetensors"]
    pickles = sorted(path.name for path in source.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise StagingError(
            f"{source}: only pickled weights ({', '.join(pickles)}); only safetensors are published. "
            "Re-save with `model.save_pretrained(folder)` (safetensors is the default)."
        )
    raise StagingError(f"{source}: no model.safetensors (or model.safetensors.index.json) found")


def _check_eval(evaluation: dict, path: Path) -> None:
    metrics = evaluation.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise StagingError(f"{path}: expected a non-empty 'metrics' object, e.g. {{\"si_sdri\": 7.1}}")
    bad = [key for key, value in metrics.items() if not isinstance(value, (int, float)) or isinstance(value, bool)]
    if bad:
        raise StagingError(f"{path}: metrics {bad} are not numbers")
    if not evaluation.get("dataset"):
        raise StagingError(f"{path}: missing 'dataset' (the evaluation set, a Hub id or a name)")


def _hub_dataset(name: str) -> str | None:
    return name if is_hub_id(name) else None


def _dataset_reference(name: str) -> str:
    """A Hub id as is; a local path reduced to its folder name (local paths mean nothing on the Hub)."""
    return _hub_dataset(name) or Path(name.rstrip("/")).name or name


def _eval_results(evaluation: dict, dataset: str) -> list:
    """``model-index`` results: ``eval.json``'s metrics on the Hub dataset ``dataset``."""
    from huggingface_hub import EvalResult

    return [
        EvalResult(
            task_type="audio-to-audio",
            task_name="Query-conditioned sound separation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split=evaluation.get("split"),
            metric_type=metric,
            metric_name=METRIC_NAMES.get(metric, metric),
            metric_value=round(float(value), 2),
        )
        for metric, value in evaluation["metrics"].items()
    ]


def _stored_values(weights: list[Path]) -> int:
    """Number of values in the weights (parameters and buffers), from the safetensors headers (nothing loaded)."""
    from safetensors import safe_open

    total = 0
    for path in weights:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="np") as handle:
                for name in handle.keys():
                    shape = handle.get_slice(name).get_shape()
                    total += math.prod(shape)
    return total


def _card_values(config: dict, weights: list[Path], training: dict, evaluation: dict | None, repo_id: str, model_name: str) -> dict:
    from clearsep_data.stats import SummaryTable

    id2label = {int(index): name for index, name in (config.get("id2label") or {}).items()}
    mids = config.get("label_mids") or []
    label_rows = [[str(index), name, mids[index] if index < len(mids) else ""] for index, name in sorted(id2label.items())]
    examples = [name for _, name in sorted(id2label.items())][:2]
    values = {
        "repo_id": repo_id,
        "model_name": model_name,
        "stored_values": _count(_stored_values(weights)),
        "config": config,
        "example_queries": examples,
        "label_table": SummaryTable("Queries", ["id", "name", "MID"], label_rows),
        "training_table": None,
        "all_training_table": None,
        "eval": evaluation,
        "metrics_table": None,
        "per_class_table": None,
        "query_kinds_table": _query_kinds(config, training, evaluation),
        "clap": config.get("query_encoder") == "clap",
    }
    if training:
        summary = [[key, value] for key, value in flatten({k: training[k] for k in TRAINING_SUMMARY_KEYS if k in training})]
        values["training_table"] = SummaryTable("Training", ["argument", "value"], summary)
        provenance = {key: value for key, value in (training.get("provenance") or {}).items() if key not in TRAINING_CARD_OMITTED}
        shown = {**training, "provenance": provenance} if "provenance" in training else training
        values["all_training_table"] = SummaryTable("All", ["argument", "value"], [list(row) for row in flatten(shown)])
    if evaluation:
        metrics = list(evaluation["metrics"])
        rows = []
        for row_name, key in (("model", "metrics"), ("mixture (no separation)", "mixture"), ("oracle", "oracle")):
            scores = evaluation.get(key)
            if isinstance(scores, dict):
                label = f"oracle ({scores['method']})" if key == "oracle" and scores.get("method") else row_name
                rows.append([label, *(_number(scores.get(metric)) for metric in metrics)])
        values["metrics_table"] = SummaryTable("Evaluation", ["", *(METRIC_NAMES.get(m, m) for m in metrics)], rows)
        per_class = evaluation.get("per_class")
        if isinstance(per_class, dict) and per_class:
            rows = [
                [name, str(scores.get("count", "")), *(_number(scores.get(metric)) for metric in metrics)]
                for name, scores in per_class.items()
                if isinstance(scores, dict)
            ]
            values["per_class_table"] = SummaryTable(
                "Per class", ["class", "items", *(METRIC_NAMES.get(m, m) for m in metrics)], rows
            )
    return values


def _query_kinds(config: dict, training: dict, evaluation: dict | None):
    """What ``separate`` accepts from this checkpoint, and what training and evaluation say about each kind."""
    from clearsep_data.stats import SummaryTable

    clap = config.get("query_encoder") == "clap"
    evaluation = evaluation or {}
    parents, absent = evaluation.get("parents") or {}, evaluation.get("absent") or {}
    gap = parents.get("si_sdr_minus_child")
    level = absent.get("median_level_db")
    rows = [
        ["class name or MID", "yes", "`queries=[\"Bark\", \"/m/05tny_\"]`", ""],
        [
            "parent class",
            "yes" if training.get("parent_rate") else "not trained",
            "`queries=[\"Dog\"]`: every class below it in the clip",
            f"parent_rate {training.get('parent_rate', 0)}" + (f"; SI-SDR {gap:+.2f} dB vs the child's own query" if gap is not None else ""),
        ],
        [
            "ontology class above the vocabulary",
            "yes" if config.get("ontology") else "no (the checkpoint carries no ontology)",
            "`queries=[\"Animal\"]`: the sum of its nearest vocabulary classes' outputs",
            "",
        ],
        [
            "absent class",
            "yes" if training.get("silence_rate") else "not trained",
            "silence; `return_dict=True` gives "
            + ("`present_probability` and " if config.get("presence_head") else "")
            + "`level_db` to threshold",
            f"silence_rate {training.get('silence_rate', 0)}"
            + (f"; presence head, gate {config.get('presence_gate', 'soft')}" if config.get("presence_head") else "")
            + (f"; median output {level:.1f} dB re mixture" if level is not None else ""),
        ],
        ["negative", "yes", "`negative_queries=[\"Speech\"]`", "mask arithmetic, no training needed"],
        ["residual", "yes", "`return_residual=True`: input minus the outputs", ""],
        ["free text", "yes" if clap else "no (needs `query_encoder=\"clap\"`)", "`queries=[\"a dog barking in the rain\"]`", "CLAP text tower" if clap else ""],
        ["audio example", "yes" if clap else "no (needs `query_encoder=\"clap\"`)", "`query_audio=[example]`", "CLAP audio tower" if clap else ""],
    ]
    return SummaryTable("Query kinds", ["kind", "supported", "how", "notes"], rows)


def _count(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}K" if value >= 1e3 else str(value)


def _number(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
