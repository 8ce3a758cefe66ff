"""Training a :class:`~clearsep_data.modeling.ClearSepModel` on ClearSep track datasets with 🤗 Accelerate.

``train(TrainingArguments(...))`` runs the loop. This package builds on the model package
(``clearsep_data.modeling``), never the other way round:

* :mod:`~clearsep_data.training.arguments`: :class:`TrainingArguments` and :class:`TrainingError`;
* :mod:`~clearsep_data.training.catalog`: track datasets, label relations and natural clips;
* :mod:`~clearsep_data.training.mixing`: the mixtures drawn on the fly from them;
* :mod:`~clearsep_data.training.model_setup`: the model a run starts from;
* :mod:`~clearsep_data.training.checkpoints`: checkpoints without pickle;
* :mod:`~clearsep_data.training.trainer`: the loop (:func:`train`) and its periodic evaluation.
"""

from clearsep_data.training.arguments import TrainingArguments, TrainingError
from clearsep_data.training.checkpoints import latest_checkpoint
from clearsep_data.training.model_setup import build_model, extend_vocabulary
from clearsep_data.training.trainer import TrainResult, evaluate_on_mixtures, train

__all__ = [
    "TrainResult",
    "TrainingArguments",
    "TrainingError",
    "build_model",
    "evaluate_on_mixtures",
    "extend_vocabulary",
    "latest_checkpoint",
    "train",
]
