"""What every contribution measure is: a small interface the validator's round evaluation calls.

A measure may :meth:`~ContributionMeasure.screen` the updates that passed ε before they are aggregated,
then scores the qualified workers (:meth:`~ContributionMeasure.contributions`); the registry in
:mod:`refiner.fl.measures` maps the names a task description may use to measures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from refiner.fl.data import Dataset
from refiner.fl.models import ModelFn

StateLike = Mapping[str, torch.Tensor]
#: The names a task description may give in ``contribution`` (its wire format: :mod:`refiner.wire.spec`).
MeasureName = Literal["leave-one-out", "gtg-shapley", "trusted-data"]
MEASURE_NAMES: tuple[str, ...] = get_args(MeasureName)


@dataclass(frozen=True)
class Screening:
    """A measure's verdict on one update before aggregation: ``flag`` None keeps it (one of
    :data:`refiner.reasons.SCREEN_FLAGS` rejects it); ``trust`` is the score the screen used, if any."""

    trust: float | None = None
    flag: str | None = None


class ContributionMeasure(ABC):
    """Scores the qualified workers of a round; higher is more helpful.

    A measure may also :meth:`screen` the updates that passed ε before they are aggregated.
    """

    #: whether :meth:`screen` uses the previous round's starting model (validators then fetch it)
    uses_previous_state = False

    def screen(
        self,
        model_fn: ModelFn,
        global_state: StateLike,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        *,
        previous_state: StateLike | None = None,
    ) -> list[Screening]:
        """One :class:`Screening` per state (with its capped sample count), in order; by default every
        update is kept."""
        return [Screening() for _ in states]

    @abstractmethod
    def contributions(
        self,
        model_fn: ModelFn,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        full_loss: float,
        *,
        global_state: StateLike,
    ) -> list[float]:
        """One score per state, in order.

        ``states``/``samples`` are the qualified local models and their sample counts (already
        checked), ``full_loss`` is ``L(D; w)`` of their FedAvg ``w`` on ``validation``, and
        ``global_state`` is the model the round started from.
        """


def check_counts(states: Sequence[object], samples: Sequence[int]) -> None:
    """ValueError unless there is one sample count per state."""
    if len(states) != len(samples):
        raise ValueError(f"{len(states)} states but {len(samples)} sample counts")
