"""A validator's work in one round (paper §2.3.6): qualify, aggregate, score contributions.

Everything that goes on chain is an integer in fixed point with ``ONE = 1_000_000`` (ppm). Losses
and contributions are first rounded to a quantum of 1e-5 (= 10 ppm): the float round-off between
machines, thread counts or summation orders was measured at ≤ 3e-8, so honest validators land in
the same cell unless a value falls within ~3e-8 of a cell boundary (a few in a thousand across
different hardware; never between thread counts on one machine). Accuracy is ``correct·ONE // n``
(exact). A worker qualifies iff its quantised loss ≤ ε in ppm.

Contributions come from the task's measure (:func:`refiner.fl.measures.measure_for`): trusted-data
for new tasks (:mod:`~refiner.fl.measures.trusted_data`), which first screens the updates that passed
ε against an update trained on the validation data (rejected ones are not aggregated) and pays the
rest by their capped sample counts; leave-one-out (what a description without the field means, and
this function's default when no measure is given); or GTG-Shapley
(:mod:`~refiner.fl.measures.gtg_shapley`), which quantises every coalition's loss on the same grid
before it takes any decision and returns values already on the grid.

Two guards keep attackers below the qualification threshold from dragging the aggregate down:

* **claimed sample counts are capped** at ``SAMPLE_CAP × median`` of the qualified claims before they
  weigh anything (the counts are self-reported and unverifiable, so a worker that claims 10× its data
  must not get 10× the weight in the average or in its own leave-one-out score);
* **the aggregate is checked before it is adopted** (:func:`adopt_checked`): FedAvg is kept only when its
  validation loss is no worse than the round's starting model or than the best qualified update; else
  the coordinate-wise median of the qualified updates (which an outlier in weight space — e.g. a model
  whose hidden units were permuted, with the same loss as its honest original — cannot move), and if
  that fails too, the best of the starting model and the qualified updates. The fallback taken is
  reported in :attr:`RoundEvaluation.aggregate_rule`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from refiner.fl.aggregation import check_compatible, coordinate_median, fedavg
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate, evaluate_many
from refiner.fl.measures import ContributionMeasure, LeaveOneOut
from refiner.fl.models import ModelFn, State, clone_state, model_digest
from refiner.units import ONE, quantize

SAMPLE_CAP = 2  # a claimed sample count weighs at most this multiple of the round's median claim


def epsilon_ppm(epsilon: float | int) -> int:
    """The qualification threshold in ppm (a float loss, as on chain ``round(ε · ONE)``)."""
    if isinstance(epsilon, float) and not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be finite, got {epsilon}")
    return round(epsilon * ONE)


@dataclass(frozen=True)
class WorkerEvaluation:
    """One worker's verdict. ``contribution`` is None (and ``contribution_ppm`` 0) when rejected."""

    worker: str
    loss: float
    loss_ppm: int
    accuracy: float
    accepted: bool
    samples: int
    contribution: float | None
    contribution_ppm: int
    #: the measure's screen: its score (e.g. trusted-data's cosine), and why it rejected the update
    trust: float | None = None
    screen: str | None = None

    @property
    def address(self) -> str:
        return self.worker

    @property
    def trust_ppm(self) -> int | None:
        return None if self.trust is None else quantize(self.trust)


@dataclass(frozen=True)
class RoundEvaluation:
    workers: tuple[WorkerEvaluation, ...]
    aggregate: State  # FedAvg of the accepted updates, or the global model if none was accepted
    loss: float  # of the aggregate on the validation set
    accuracy: float
    correct: int
    n: int
    digest: bytes  # model_digest(aggregate)
    epsilon_ppm: int
    #: how the adopted model was made: "fedavg", or the fallback "median", "start" or "best-update"
    aggregate_rule: str = "fedavg"

    @property
    def state(self) -> State:
        return self.aggregate

    @property
    def loss_ppm(self) -> int:
        return quantize(self.loss)

    @property
    def accuracy_ppm(self) -> int:
        return self.correct * ONE // self.n

    @property
    def accepted(self) -> list[str]:
        return [w.worker for w in self.workers if w.accepted]

    def fixed_results(self) -> list[tuple[str, bool, int, int]]:
        """Per worker, in input order: (address, accepted, samples, contribution_ppm)."""
        return [(w.worker, w.accepted, w.samples, w.contribution_ppm) for w in self.workers]


def capped_samples(samples: Sequence[int]) -> list[int]:
    """Each claim capped at ``SAMPLE_CAP ×`` the median claim (the lower median: exact integers)."""
    if not samples:
        return []
    median = sorted(samples)[(len(samples) - 1) // 2]
    return [min(n, SAMPLE_CAP * median) for n in samples]


@dataclass(frozen=True)
class _Candidate:
    rule: str
    state: State
    loss: float
    accuracy: float
    correct: int
    n: int


def adopt_checked(
    model_fn: ModelFn,
    global_state: Mapping[str, torch.Tensor],
    q_states: Sequence[Mapping[str, torch.Tensor]],
    q_losses: Sequence[float],
    aggregate: State,
    validation: Dataset,
) -> tuple[_Candidate, float]:
    """The model the round adopts and FedAvg's validation loss (see the module docstring).

    Comparisons are made on the quantised grid, so that honest validators take the same branch.
    Returns the FedAvg aggregate unless it is worse than both the starting model and the best
    qualified update; then the median, then the best of start and updates.
    """
    full = evaluate(model_fn, aggregate, validation)
    fedavg_c = _Candidate("fedavg", aggregate, full.loss, full.accuracy, full.correct, full.n)
    if not q_states:
        return fedavg_c, full.loss
    start = evaluate(model_fn, global_state, validation)
    best_update = min(range(len(q_states)), key=lambda i: (quantize(q_losses[i]), i))
    bound = max(quantize(start.loss), quantize(q_losses[best_update]))
    if quantize(full.loss) <= bound:
        return fedavg_c, full.loss
    if len(q_states) >= 3:
        med = coordinate_median(q_states)
        m = evaluate(model_fn, med, validation)
        if quantize(m.loss) <= bound:
            return _Candidate("median", med, m.loss, m.accuracy, m.correct, m.n), full.loss
    if quantize(q_losses[best_update]) < quantize(start.loss):
        st = clone_state(q_states[best_update])
        b = evaluate(model_fn, st, validation)
        return _Candidate("best-update", st, b.loss, b.accuracy, b.correct, b.n), full.loss
    return _Candidate(
        "start", clone_state(global_state), start.loss, start.accuracy, start.correct, start.n
    ), full.loss


def evaluate_round(
    model_fn: ModelFn,
    global_state: Mapping[str, torch.Tensor],
    updates: Sequence[tuple[str, Mapping[str, torch.Tensor], int]],
    validation: Dataset,
    epsilon: float,
    measure: ContributionMeasure | None = None,
    *,
    previous_state: Mapping[str, torch.Tensor] | None = None,
) -> RoundEvaluation:
    """Score each ``(worker, state, samples)`` update on ``validation``; aggregate the qualified ones.

    1. ``L(D; w_i)`` for every update (one :func:`evaluate_many` pass); qualified iff quantised ≤ ε
       and the measure's screen keeps it (:meth:`ContributionMeasure.screen`; ``previous_state``, the
       previous round's starting model where known, lets it recognise a repeated global step).
    2. ``w`` = FedAvg of the qualified updates with capped sample counts, summed in address order (the
       global model if none qualifies), so the result does not depend on the order of ``updates``;
       checked against the starting model before it is adopted (:func:`adopt_checked`).
    3. ``L(D; w)``, accuracy, digest, and ``measure``'s contributions (default LeaveOneOut), scored
       against FedAvg (a fallback model changes what is adopted, not how the updates are scored).
    Per-worker results are reported in the order of ``updates``, which is also the order the screen sees
    them in (validators pass them in submission order, so that a near-duplicate's original, the first,
    is the one kept).
    The states are expected to be validated already (:func:`refiner.fl.models.deserialize`).
    """
    measure = measure if measure is not None else LeaveOneOut()
    if len(validation) == 0:
        raise ValueError("the validation set is empty")
    addresses = [u[0] for u in updates]
    if len({a.lower() for a in addresses}) != len(addresses):
        raise ValueError(f"duplicate worker addresses in {addresses}")
    if any(not isinstance(u[2], int) or u[2] <= 0 for u in updates):
        raise ValueError("sample counts must be positive integers")
    states = [u[1] for u in updates]
    check_compatible([global_state, *states])
    eps = epsilon_ppm(epsilon)

    local = evaluate_many(model_fn, states, validation)
    losses_ppm = [quantize(e.loss) for e in local]
    # canonical order (by address) so that the float64 sums, hence the digest, do not depend on the
    # order in which a validator happened to collect the updates
    passed = sorted((i for i, lp in enumerate(losses_ppm) if lp <= eps), key=lambda i: addresses[i].lower())
    if previous_state is not None:
        check_compatible([global_state, previous_state])
    # screened in the order of `updates` (on chain, the submission order): of near-duplicates the first is
    # the original (a copy needs its plaintext), whatever the addresses
    screened = sorted(passed)
    screens = dict(
        zip(
            screened,
            measure.screen(
                model_fn,
                global_state,
                [states[i] for i in screened],
                capped_samples([updates[i][2] for i in screened]),
                validation,
                previous_state=previous_state,
            ),
            strict=True,
        )
    )
    accepted_idx = [i for i in passed if screens[i].flag is None]
    q_states = [states[i] for i in accepted_idx]
    q_samples = capped_samples([updates[i][2] for i in accepted_idx])

    fedavg_state = fedavg(q_states, q_samples) if q_states else clone_state(global_state)
    adopted, fedavg_loss = adopt_checked(
        model_fn, global_state, q_states, [local[i].loss for i in accepted_idx], fedavg_state, validation
    )
    contributions = (
        measure.contributions(
            model_fn, q_states, q_samples, validation, fedavg_loss, global_state=global_state
        )
        if q_states
        else []
    )
    if len(contributions) != len(q_states):
        raise ValueError(
            f"{measure!r} returned {len(contributions)} contributions for {len(q_states)} workers"
        )
    by_index = dict(zip(accepted_idx, contributions, strict=True))

    workers = []
    for i, (address, _, samples) in enumerate(updates):
        c = by_index.get(i)
        screening = screens.get(i)
        workers.append(
            WorkerEvaluation(
                worker=address,
                loss=local[i].loss,
                loss_ppm=losses_ppm[i],
                accuracy=local[i].accuracy,
                accepted=c is not None,
                samples=samples,
                contribution=c,
                contribution_ppm=quantize(c) if c is not None else 0,
                trust=screening.trust if screening else None,
                screen=screening.flag if screening else None,
            )
        )
    return RoundEvaluation(
        workers=tuple(workers),
        aggregate=adopted.state,
        loss=adopted.loss,
        accuracy=adopted.accuracy,
        correct=adopted.correct,
        n=adopted.n,
        digest=model_digest(adopted.state),
        epsilon_ppm=eps,
        aggregate_rule=adopted.rule,
    )
