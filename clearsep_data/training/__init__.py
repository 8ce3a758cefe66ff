"""Training a :class:`~clearsep_data.modeling.ClearSepModel` on ClearSep track datasets with 🤗 Accelerate.

``train(TrainingArguments(...))`` runs the loop (:mod:`clearsep_data.training.trainer`) on mixtures drawn on the fly
from track datasets (:mod:`clearsep_data.training.mixing`). This package builds on the model package
(``clearsep_data.modeling``), never the other way round.
"""

from clearsep_data.training.trainer import (
    TrainingArguments,
    TrainingError,
    TrainResult,
    build_model,
    evaluate,
    extend_vocabulary,
    latest_checkpoint,
    train,
)

__all__ = [
    "TrainResult",
    "TrainingArguments",
    "TrainingError",
    "build_model",
    "evaluate",
    "extend_vocabulary",
    "latest_checkpoint",
    "train",
]
