"""Contribution measures, one per module behind :class:`~refiner.fl.measures.base.ContributionMeasure`,
and the registry a task description's ``contribution`` name is looked up in (as the aggregators'
:data:`refiner.fl.aggregation.AGGREGATORS`).

To add a measure: a module here with a subclass, its name in :data:`~refiner.fl.measures.base.MeasureName`
and an entry in :data:`MEASURES` (docs/incentives.md says how the built-in ones were chosen).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from refiner.fl.measures.base import MEASURE_NAMES, ContributionMeasure, MeasureName, Screening, StateLike
from refiner.fl.measures.gtg_shapley import GtgShapley
from refiner.fl.measures.leave_one_out import LeaveOneOut, leave_one_out_states
from refiner.fl.measures.trusted_data import TrustedData
from refiner.fl.training import TrainingConfig

#: Each measure by name, built from the task's local-training settings (which only trusted-data uses,
#: to train its reference as workers train).
MEASURES: dict[str, Callable[[TrainingConfig], ContributionMeasure]] = {
    "leave-one-out": lambda training: LeaveOneOut(),
    "gtg-shapley": lambda training: GtgShapley(),
    "trusted-data": TrustedData,
}


class _Describes(Protocol):
    @property
    def contribution(self) -> str: ...
    @property
    def epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def lr(self) -> float: ...


def measure_for(description: _Describes | str) -> ContributionMeasure:
    """The contribution measure a task asks for: its description's ``contribution`` field with the
    description's epochs, batch size and lr, or the name itself with the default training settings."""
    name = description if isinstance(description, str) else description.contribution
    try:
        build = MEASURES[name]
    except KeyError:
        raise ValueError(f"unknown contribution measure {name!r}: use one of {list(MEASURE_NAMES)}") from None
    if isinstance(description, str):
        return build(TrainingConfig())
    return build(
        TrainingConfig(epochs=description.epochs, batch_size=description.batch_size, lr=description.lr)
    )


__all__ = [
    "MEASURES",
    "MEASURE_NAMES",
    "ContributionMeasure",
    "GtgShapley",
    "LeaveOneOut",
    "MeasureName",
    "Screening",
    "StateLike",
    "TrustedData",
    "leave_one_out_states",
    "measure_for",
]
