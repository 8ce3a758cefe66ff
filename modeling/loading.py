"""Strict checks for loading a ClearSep model: one clear error instead of a silent random init or a deep traceback.

Left to itself, transformers' ``from_pretrained`` randomly initialises tensors missing from the weights file (only
logging a report), blames ``ignore_mismatched_sizes`` when ``config.json`` does not match the weights, unpickles a
``pytorch_model.bin``, and takes a mistyped local path for a Hub id (retrying for half a minute). A local folder is
therefore checked here before transformers reads it (:func:`check_model_folder`), and what transformers reports
after loading from any source (the Hub too) is checked by :func:`check_loading_info`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedConfig
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME

EXAMPLES = 3
"""Tensor names quoted per kind of problem."""

Shape = tuple[int, ...]


class ClearSepLoadError(ValueError):
    """A model folder or repository that cannot be loaded as it is; the message names the file and the fault."""


def is_hub_id(source: str | os.PathLike) -> bool:
    """Whether ``source`` is to be fetched from the Hub rather than read from a local folder.

    Only a string that does not exist locally and has the form of a Hub id (``name`` or ``org/name`` in the Hub's
    characters) is one: a mistyped path such as ``./run``, ``/data/model``, ``~/model`` or ``runs/a/b`` is then
    reported as a missing folder at once instead of being retried against the Hub.
    """
    if not isinstance(source, str) or os.path.exists(source):
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def check_model_folder(folder: Path, model_class: type, config: PreTrainedConfig | str | None = None) -> None:
    """Raise :class:`ClearSepLoadError` unless ``folder`` holds ``config.json`` and a complete ``model.safetensors``
    whose tensors have exactly the names and shapes of the model that the config describes."""
    if not folder.is_dir():
        raise ClearSepLoadError(
            f"model folder {folder} does not exist" if not folder.exists() else f"{folder} is not a model folder"
        )
    if not (folder / CONFIG_NAME).is_file():
        raise ClearSepLoadError(f"model folder {folder} has no {CONFIG_NAME}")
    weights = folder / SAFE_WEIGHTS_NAME
    if not weights.is_file():
        pickles = sorted(path.name for path in folder.iterdir() if path.suffix in (".bin", ".pt", ".pth", ".pkl"))
        refused = f" ({', '.join(pickles)} not loaded: only safetensors weights are loaded, never pickle)"
        raise ClearSepLoadError(f"model folder {folder} has no {SAFE_WEIGHTS_NAME}" + (refused if pickles else ""))
    if not isinstance(config, PreTrainedConfig):
        config = model_class.config_class.from_pretrained(config or folder)
    found = _file_shapes(weights)
    expected = _model_shapes(model_class, config)
    mismatched = {key: (found[key], shape) for key, shape in expected.items() if found.get(key, shape) != shape}
    what = f"{weights} does not match {folder / CONFIG_NAME}"
    _raise_on_mismatch(what, expected.keys() - found.keys(), found.keys() - expected.keys(), mismatched)


def check_loading_info(source: str | os.PathLike, info: Mapping) -> None:
    """Raise :class:`ClearSepLoadError` when transformers' loading info (``output_loading_info=True``, with
    ``ignore_mismatched_sizes=True``) reports tensors missing, unexpected or of another shape."""
    mismatched = {key: (tuple(found), tuple(expected)) for key, found, expected in info["mismatched_keys"]}
    what = f"{source}: the weights do not match the config"
    _raise_on_mismatch(what, set(info["missing_keys"]), set(info["unexpected_keys"]), mismatched)


def _file_shapes(weights: Path) -> dict[str, Shape]:
    """Tensor shapes from a safetensors header; its reader also refuses a file shorter or longer than it declares."""
    try:
        with safe_open(weights, framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorError as error:
        raise ClearSepLoadError(f"{weights} is not a complete safetensors file (cut short?): {error}") from None


def _model_shapes(model_class: type, config: PreTrainedConfig) -> dict[str, Shape]:
    """Names and shapes of the tensors a checkpoint of ``config`` holds (the model built on the meta device: free)."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _raise_on_mismatch(
    what: str, missing: set[str], unexpected: set[str], mismatched: dict[str, tuple[Shape, Shape]]
) -> None:
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({_examples(unexpected)})")
    if mismatched:
        shapes = [
            f"{key} {list(found)} in the weights, {list(expected)} for the config"
            for key, (found, expected) in sorted(mismatched.items())[:EXAMPLES]
        ]
        problems.append(f"{len(mismatched)} tensor(s) of another shape ({'; '.join(shapes)})")
    if problems:
        raise ClearSepLoadError(f"{what}: {', '.join(problems)}")


def _examples(keys: set[str]) -> str:
    names = sorted(keys)
    return ", ".join(names[:EXAMPLES]) + (", ..." if len(names) > EXAMPLES else "")


__all__ = ["ClearSepLoadError", "check_loading_info", "check_model_folder", "is_hub_id"]
