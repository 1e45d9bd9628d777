import math

import pytest
import torch

from refiner.fl.data import Dataset
from refiner.fl.inference import PIXELS, classify_digit, grey_levels
from refiner.fl.models import initial_state, logistic
from refiner.fl.training import TrainingConfig, train_local


def test_a_trained_model_reads_a_drawn_digit_given_as_grey_levels(mnist: tuple[Dataset, Dataset]) -> None:
    train, test = mnist
    state = train_local(logistic, initial_state(logistic, 0), train, TrainingConfig(epochs=1))
    pixels = grey_levels(test.x[0])
    assert len(pixels) == PIXELS and all(0.0 <= p <= 1.0 for p in pixels)
    probabilities = classify_digit(logistic, state, pixels)
    assert probabilities is not None and math.isclose(sum(probabilities), 1.0, rel_tol=1e-5)
    assert max(range(10), key=lambda i: probabilities[i]) == int(test.y[0])


def test_a_model_without_a_finite_answer_gives_none_and_a_wrong_size_is_refused() -> None:
    state = {k: torch.full_like(v, math.nan) for k, v in initial_state(logistic, 0).items()}
    assert classify_digit(logistic, state, [0.0] * PIXELS) is None
    with pytest.raises(ValueError, match="784 grey levels, not 3"):
        classify_digit(logistic, initial_state(logistic, 0), [0.0] * 3)
