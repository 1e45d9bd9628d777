"""Validation loss and accuracy on a fixed evaluation path, for one model or many at once.

The path is fixed so that honest validators agree bit for bit: float32 forward passes over batches
of ``batch_size`` samples in dataset order, per-sample cross-entropy losses summed exactly
(``math.fsum`` of the float32 values, hence independent of summation order), divided by N once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call

from refiner.fl.data import Dataset
from refiner.fl.models import ModelFn

EVAL_BATCH = 125
# 125 rather than 500: on this 2-core CPU, 2k images took 0.24 s (small CNN) / 0.73 s (McMahan CNN)
# at 125 vs 0.50 s / 1.24 s at 500 (1 thread); the losses were bit-identical for batch sizes 32..2000.


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy
    accuracy: float  # correct / n
    correct: int
    n: int


def _finish(losses: list[float], correct: int, n: int) -> Evaluation:
    loss = math.fsum(losses) / n if n else math.nan
    return Evaluation(loss=loss, accuracy=correct / n if n else math.nan, correct=correct, n=n)


def _batch_stats(logits: torch.Tensor, y: torch.Tensor) -> tuple[list[float], int]:
    losses = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
    correct = int((logits.argmax(dim=-1) == y).sum())
    return losses.tolist(), correct


def evaluate(
    model_fn: ModelFn, state: Mapping[str, torch.Tensor], data: Dataset, batch_size: int = EVAL_BATCH
) -> Evaluation:
    """Mean cross-entropy and accuracy of ``state`` on ``data`` (eval mode, no gradients)."""
    model = model_fn()
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    losses: list[float] = []
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x, y = data.x[start : start + batch_size], data.y[start : start + batch_size]
            batch_losses, batch_correct = _batch_stats(model(x), y)
            losses.extend(batch_losses)
            correct += batch_correct
    return _finish(losses, correct, len(data))


def evaluate_many(
    model_fn: ModelFn,
    states: Sequence[Mapping[str, torch.Tensor]],
    data: Dataset,
    batch_size: int = EVAL_BATCH,
) -> list[Evaluation]:
    """``[evaluate(model_fn, s, data) for s in states]``, bit for bit, in one pass over the data.

    One module is built and re-parametrised per state with ``torch.func.functional_call`` (no copies
    of the weights, no ``load_state_dict``), and each batch is sliced once for all models. Every model
    sees exactly the same batches and kernels as in :func:`evaluate`, so the results are identical.
    (``torch.vmap`` over stacked weights was measured too: 1.7-1.9x *slower* on this CPU for six
    models, and its grouped convolutions moved the McMahan CNN's losses by up to 4e-9.)
    """
    if not states:
        return []
    model = model_fn()
    model.eval()
    names = set(model.state_dict())
    params = []
    for i, s in enumerate(states):
        if set(s) != names:
            raise ValueError(f"state {i} does not match the model's parameter names")
        params.append(dict(s))
    losses: list[list[float]] = [[] for _ in states]
    correct = [0] * len(states)
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            x, y = data.x[start : start + batch_size], data.y[start : start + batch_size]
            for i, p in enumerate(params):
                batch_losses, batch_correct = _batch_stats(functional_call(model, p, (x,)), y)
                losses[i].extend(batch_losses)
                correct[i] += batch_correct
    return [_finish(lo, c, len(data)) for lo, c in zip(losses, correct, strict=True)]
