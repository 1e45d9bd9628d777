from __future__ import annotations

import math

import torch

from refiner.fl.data import Dataset, synthetic_dataset
from refiner.fl.evaluation import evaluate, evaluate_many
from refiner.fl.models import initial_state, logistic, small_cnn


def test_evaluate_zero_model_by_hand() -> None:
    zeros = {k: torch.zeros_like(v) for k, v in initial_state(logistic, 0).items()}
    data = synthetic_dataset(1234, seed=4)  # 1234: two full batches of 500 and a partial one
    ev = evaluate(logistic, zeros, data)
    assert ev.n == 1234
    assert abs(ev.loss - math.log(10)) < 1e-6  # uniform logits
    assert ev.correct == int((data.y == 0).sum())  # argmax of equal logits is class 0
    assert ev.accuracy == ev.correct / 1234


def test_evaluate_many_is_bit_identical_to_evaluate() -> None:
    data = synthetic_dataset(700, seed=5)
    for fn in (logistic, small_cnn):
        states = [initial_state(fn, s) for s in range(4)]
        assert evaluate_many(fn, states, data) == [evaluate(fn, s, data) for s in states]
    assert evaluate_many(logistic, [], data) == []


def test_evaluation_does_not_depend_on_dataset_storage() -> None:
    data = synthetic_dataset(600, seed=6)
    strided = Dataset(data.x.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2), data.y)
    s = initial_state(small_cnn, 1)
    assert evaluate(small_cnn, s, strided) == evaluate(small_cnn, s, data)
