"""A model's answer on one drawn digit, for people (the web page's "draw a digit")."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from refiner.fl.data import MNIST_MEAN, MNIST_STD
from refiner.fl.models import ModelFn, State

PIXELS = 28 * 28


def classify_digit(model_fn: ModelFn, state: State, pixels: Sequence[float]) -> list[float] | None:
    """The ten class probabilities of `state` for a 28×28 image of grey levels in [0, 1] (0 is the
    background), normalised as the models were trained; None if the model gives no finite answer."""
    if len(pixels) != PIXELS:
        raise ValueError(f"a digit is {PIXELS} grey levels, not {len(pixels)}")
    model = model_fn()
    model.load_state_dict(state)
    model.eval()
    grey = torch.tensor(list(pixels), dtype=torch.float32).clamp(0, 1).reshape(1, 1, 28, 28)
    with torch.no_grad():
        probabilities: list[float] = torch.softmax(model((grey - MNIST_MEAN) / MNIST_STD), dim=1)[0].tolist()
    return probabilities if all(math.isfinite(p) for p in probabilities) else None


def grey_levels(x: torch.Tensor) -> list[float]:
    """A (normalised) MNIST image as the 784 grey levels in [0, 1] that :func:`classify_digit` takes."""
    return [round(float(v), 4) for v in (x * MNIST_STD + MNIST_MEAN).clamp(0, 1).flatten()]


def use_one_thread() -> None:
    """Run torch's CPU kernels on one thread: honest validators agree bit for bit at one thread count."""
    torch.set_num_threads(1)
