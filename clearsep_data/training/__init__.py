"""Training a :class:`~clearsep_data.modeling.ClearSepModel` on ClearSep track datasets with 🤗 Accelerate.

``train(TrainingArguments(...))`` runs the loop. This package builds on the model package
(``clearsep_data.modeling``), never the other way round:

* :mod:`~clearsep_data.training.arguments`: :class:`TrainingArguments` and :class:`TrainingError`;
* :mod:`~clearsep_data.training.catalog`: track datasets, label relations and natural clips;
* :mod:`~clearsep_data.training.mixing`: the mixtures drawn on the fly from them;
* :mod:`~clearsep_data.training.model_setup`: the model a run starts from;
* :mod:`~clearsep_data.training.checkpoints`: checkpoints without pickle;
* :mod:`~clearsep_data.training.validation`: what a run scores itself on, and the best model it keeps;
* :mod:`~clearsep_data.training.trainer`: the loop (:func:`train`).
"""

import importlib

from clearsep_data.training.arguments import TrainingArguments, TrainingError

# The arguments load without torch (the command line builds ``train``'s options from them); the rest on first use.
_LAZY = {
    "latest_checkpoint": "checkpoints",
    "build_model": "model_setup",
    "extend_vocabulary": "model_setup",
    "TrainResult": "trainer",
    "BenchmarkValidation": "validation",
    "TrackValidation": "validation",
    "train": "trainer",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)

__all__ = [
    "TrainResult",
    "TrainingArguments",
    "TrainingError",
    "BenchmarkValidation",
    "TrackValidation",
    "build_model",
    "extend_vocabulary",
    "latest_checkpoint",
    "train",
]
