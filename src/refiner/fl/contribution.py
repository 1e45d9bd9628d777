"""How much each qualified worker contributed to a round's aggregate.

The paper (§2.3.6) scores worker j by ``L(D; w) − L(D; w^j)`` with ``w^j = Σ_{i≠j} n_i/n · w_i``,
where ``n`` still counts worker j's samples. We deliberately differ in two ways:

* **Re-normalised leave-one-out model.** Without j the paper's weights sum to ``1 − n_j/n``, so
  ``w^j`` is a *shrunken* model (every weight scaled towards zero), not a model FedAvg could have
  produced. Its loss mostly measures that shrinkage, which grows with n_j, so the score would reward
  data size rather than usefulness. We use ``w^{-j} = Σ_{i≠j} n_i/(n − n_j) · w_i``: the aggregate
  the round would have produced had j not taken part.
* **Sign.** We use ``c_j = L(D; w^{-j}) − L(D; w)``: how much *worse* the round's model would be
  without j. A helpful worker gets a positive contribution, a harmful one a negative contribution,
  so rewards can be proportional to c_j (the paper's sign would make helpful workers negative).

With a single qualified worker, ``w^{-j}`` is an average of nothing. The natural counterfactual is
that the round changes nothing, i.e. the global model of the round stays: ``c_j = L(D; w_global) −
L(D; w)``, the worker's whole improvement on the model it started from (which may be negative).

Leave-one-out gives two workers that submit the same (or nearly the same) update ≈ 0 each: without
either one the other still provides it. :class:`refiner.fl.shapley.GtgShapley` (Shapley values over
reconstructed coalition models) shares that value between them instead; a task chooses its measure
in its description (``contribution``), see :func:`measure_for`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import torch

from refiner.fl.aggregation import checked_weights, fedavg
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate_many
from refiner.fl.models import ModelFn

StateLike = Mapping[str, torch.Tensor]
MeasureName = Literal["leave-one-out", "gtg-shapley", "trusted-data"]
MEASURES: tuple[str, ...] = get_args(MeasureName)


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


def leave_one_out_states(
    states: Sequence[StateLike], samples: Sequence[int]
) -> list[dict[str, torch.Tensor]]:
    """``w^{-j}`` for each j: the FedAvg of the other states re-normalised over their samples.

    Computed as ``(S − n_j·w_j) / (n − n_j)`` from the total ``S = Σ n_i·w_i`` (float64, summed in the
    given order as :func:`fedavg` does), so N aggregates cost O(N) passes over the weights, not O(N²):
    100 workers took 16 s of a 100-worker round's 88 s this way round (bench/scale.py). Each product
    ``n_j·w_j`` is exact in float64, so the result is deterministic (validators agree bit for bit);
    it equals re-summing the others to within float64 round-off, far below float32's precision (a
    worker holding nearly all samples is the exception: see ``_CANCELLATION_BITS``).
    """
    if len(states) < 2:
        raise ValueError("leave-one-out aggregates need at least two states")
    ns = checked_weights(states, samples)
    total = sum(ns)
    # a worker holding all but 2^-k of the samples: its aggregate is summed directly (see below)
    direct = {j for j, n in enumerate(ns) if total > (total - n) << _CANCELLATION_BITS}
    out: list[dict[str, torch.Tensor]] = [{} for _ in states]
    for name in sorted(states[0]):
        ref = states[0][name]
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        if ref.is_floating_point():
            for s, n in zip(states, ns, strict=True):
                acc.add_(s[name].detach().to("cpu", torch.float64), alpha=n)
        for j, (s, n) in enumerate(zip(states, ns, strict=True)):
            if j in direct:
                continue
            if not ref.is_floating_point():  # as fedavg: from the first of the others
                out[j][name] = states[1 if j == 0 else 0][name].detach().to("cpu").clone().contiguous()
                continue
            rest = acc.sub(s[name].detach().to("cpu", torch.float64), alpha=n)
            out[j][name] = rest.div_(total - n).to(ref.dtype).contiguous()
    for j in direct:
        out[j] = fedavg([s for i, s in enumerate(states) if i != j], [n for i, n in enumerate(ns) if i != j])
    return out


#: Subtracting a worker holding all but 2^-k of the samples loses about k of float64's 53 bits; past
#: k = 20 fewer than float32's 24 would be left, so that (single) worker's aggregate is summed directly.
_CANCELLATION_BITS = 20


class LeaveOneOut(ContributionMeasure):
    """``c_j = L(D; w^{-j}) − L(D; w)``, re-normalised (see the module docstring for why)."""

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
        if len(states) != len(samples):
            raise ValueError(f"{len(states)} states but {len(samples)} sample counts")
        if not states:
            return []
        counterfactuals = [dict(global_state)] if len(states) == 1 else leave_one_out_states(states, samples)
        evals = evaluate_many(model_fn, counterfactuals, validation)
        return [e.loss - full_loss for e in evals]

    def __repr__(self) -> str:
        return "LeaveOneOut()"


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
    """The contribution measure a task asks for: its description's ``contribution`` field (or the
    name itself), ``"leave-one-out"``, ``"gtg-shapley"`` (with :class:`GtgShapley`'s defaults) or
    ``"trusted-data"`` (its reference trained with the description's epochs, batch size and lr)."""
    name = description if isinstance(description, str) else description.contribution
    if name == "leave-one-out":
        return LeaveOneOut()
    if name == "gtg-shapley":
        from refiner.fl.shapley import GtgShapley  # shapley imports this module

        return GtgShapley()
    if name == "trusted-data":
        from refiner.fl.training import TrainingConfig
        from refiner.fl.trust import TrustedData  # trust imports this module

        if isinstance(description, str):
            return TrustedData()
        return TrustedData(
            TrainingConfig(epochs=description.epochs, batch_size=description.batch_size, lr=description.lr)
        )
    raise ValueError(f"unknown contribution measure {name!r}: use one of {list(MEASURES)}")
