"""Federated learning in plain PyTorch (CPU): data, models, training, evaluation, aggregation,
contributions and a validator's round evaluation. No chain code lives here."""

from refiner.fl.aggregation import fedavg
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist, subset, synthetic_dataset
from refiner.fl.evaluation import Evaluation, evaluate, evaluate_many
from refiner.fl.measures import ContributionMeasure, LeaveOneOut
from refiner.fl.models import (
    ModelSpec,
    ModelValidationError,
    State,
    deserialize,
    initial_state,
    load_factory,
    local_models,
    logistic,
    mnist_cnn,
    model_digest,
    resolve_model,
    serialize,
    small_cnn,
    spec_of,
)
from refiner.fl.plain import RoundStats, run_fedavg
from refiner.fl.round_evaluation import RoundEvaluation, WorkerEvaluation, evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local

__all__ = [
    "ContributionMeasure",
    "Dataset",
    "Evaluation",
    "LeaveOneOut",
    "ModelSpec",
    "ModelValidationError",
    "RoundEvaluation",
    "RoundStats",
    "State",
    "TrainingConfig",
    "WorkerEvaluation",
    "deserialize",
    "evaluate",
    "evaluate_many",
    "evaluate_round",
    "fedavg",
    "free_ride",
    "initial_state",
    "load_factory",
    "load_mnist",
    "local_models",
    "logistic",
    "mnist_cnn",
    "model_digest",
    "resolve_model",
    "run_fedavg",
    "serialize",
    "shuffle_labels",
    "small_cnn",
    "spec_of",
    "split_mnist",
    "subset",
    "synthetic_dataset",
    "train_local",
]
