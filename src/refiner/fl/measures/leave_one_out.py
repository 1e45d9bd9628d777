"""Leave-one-out: how much worse the round's aggregate would be without each qualified worker.

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
either one the other still provides it. :class:`~refiner.fl.measures.GtgShapley` (Shapley values over
reconstructed coalition models) shares that value between them instead; a task chooses its measure
in its description (``contribution``), see :func:`refiner.fl.measures.measure_for`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from refiner.fl.aggregation import checked_weights, fedavg
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate_many
from refiner.fl.measures.base import ContributionMeasure, StateLike, check_counts
from refiner.fl.models import ModelFn


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
        check_counts(states, samples)
        if not states:
            return []
        counterfactuals = [dict(global_state)] if len(states) == 1 else leave_one_out_states(states, samples)
        evals = evaluate_many(model_fn, counterfactuals, validation)
        return [e.loss - full_loss for e in evals]

    def __repr__(self) -> str:
        return "LeaveOneOut()"
