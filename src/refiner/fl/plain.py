"""The same FL code as a plain FedAvg/FedProx loop without any chain: the overhead baseline, and the
robustness bench's loop (FedAvg, coordinate-wise median or Krum on the same data)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import torch

from refiner.fl.aggregation import Aggregator, resolve_aggregator
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate, evaluate_many
from refiner.fl.measures import ContributionMeasure
from refiner.fl.models import ModelFn, State, clone_state, initial_state
from refiner.fl.round_evaluation import evaluate_round
from refiner.fl.training import TrainingConfig, train_local


@dataclass(frozen=True)
class RoundStats:
    round: int  # 1-based
    test_accuracy: float
    test_loss: float
    accepted: int  # local models aggregated (all of them unless epsilon filtered some)
    train_seconds: float  # all workers, sequentially
    eval_seconds: float  # qualification (if epsilon) + test evaluation
    seconds: float  # the whole round
    contributions_ppm: tuple[int, ...] = ()  # per shard, only with ``contributions=True`` (0 if rejected)


Tamper = Callable[[State, State], State]
"""A Byzantine worker: (global state, its honest local state) → the state it submits instead."""


def scale_update(factor: float) -> Tamper:
    """Submit ``w_g + factor · (w_local − w_g)``: ``-1`` flips the update's sign, ``10`` boosts it
    (computed in float64 and cast back; non-floating tensors are left as trained)."""

    def tamper(global_state: State, local: State) -> State:
        out: State = {}
        for k, v in local.items():
            if v.is_floating_point():
                g = global_state[k].to(torch.float64)
                out[k] = (g + factor * (v.to(torch.float64) - g)).to(v.dtype).contiguous()
            else:
                out[k] = v.clone()
        return out

    return tamper


def worker_config(cfg: TrainingConfig, round_: int, worker: int) -> TrainingConfig:
    """Worker ``worker``'s config in round ``round_`` (1-based): its own deterministic seed."""
    return replace(cfg, seed=cfg.seed * 1_000_003 + round_ * 1_000 + worker)


def run_fedavg(
    model_fn: ModelFn,
    shards: Sequence[Dataset],
    validation: Dataset | None,
    test: Dataset,
    rounds: int,
    cfg: TrainingConfig,
    epsilon: float | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    on_round: Callable[[RoundStats], None] | None = None,
    contributions: bool = False,
    aggregator: str | Aggregator = "fedavg",
    measure: ContributionMeasure | None = None,
    byzantine: Mapping[int, Tamper] | None = None,
) -> list[RoundStats]:
    """``rounds`` rounds of: every shard trains locally (sequentially), optionally only the local
    models with validation loss ≤ ``epsilon`` are kept, aggregation, test evaluation.

    With ``contributions=True`` the qualification and aggregation are one validator's
    :func:`evaluate_round` (``measure``'s contributions, default leave-one-out, needs ``epsilon``): the
    chain-less baseline of a Refiner round with a committee of one.
    ``aggregator`` combines the kept local models: an :class:`~refiner.fl.aggregation.Aggregator` or
    its name, ``"fedavg"`` (by sample count, the default), ``"median"`` or ``"krum"``. Contributions
    are always measured against the FedAvg aggregate (as a validator does), whatever the aggregator.
    ``byzantine`` maps a shard index to a :data:`Tamper` that replaces that worker's honest local model
    every round (e.g. ``scale_update(-1.0)``, a sign flip), before qualification and aggregation.
    The initial model is ``initial`` or ``initial_state(model_fn, cfg.seed)``; ``cfg.mu > 0`` is FedProx.
    """
    if epsilon is not None and validation is None:
        raise ValueError("epsilon needs a validation set")
    if contributions and epsilon is None:
        raise ValueError("contributions need epsilon (and a validation set)")
    aggregate = resolve_aggregator(aggregator)
    tamper = dict(byzantine or {})
    if any(not 0 <= i < len(shards) for i in tamper):
        raise ValueError(f"byzantine workers {sorted(tamper)} are not all shard indices < {len(shards)}")
    state: State = clone_state(initial) if initial is not None else initial_state(model_fn, cfg.seed)
    stats: list[RoundStats] = []
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        locals_ = [train_local(model_fn, state, d, worker_config(cfg, r, i)) for i, d in enumerate(shards)]
        locals_ = [tamper[i](state, s) if i in tamper else s for i, s in enumerate(locals_)]
        sizes = [len(d) for d in shards]
        t1 = time.perf_counter()
        scores: tuple[int, ...] = ()
        if contributions and epsilon is not None and validation is not None:
            updates = [(str(i), s, n) for i, (s, n) in enumerate(zip(locals_, sizes, strict=True))]
            verdict = evaluate_round(model_fn, state, updates, validation, epsilon, measure)
            scores = tuple(w.contribution_ppm for w in verdict.workers)
            locals_ = [locals_[i] for i, w in enumerate(verdict.workers) if w.accepted]
            sizes = [w.samples for w in verdict.workers if w.accepted]
        elif epsilon is not None and validation is not None:
            evals = evaluate_many(model_fn, locals_, validation)
            keep = [i for i, e in enumerate(evals) if e.loss <= epsilon]
            locals_, sizes = [locals_[i] for i in keep], [sizes[i] for i in keep]
        if locals_:
            state = aggregate(locals_, sizes)
        ev = evaluate(model_fn, state, test)
        t2 = time.perf_counter()
        st = RoundStats(r, ev.accuracy, ev.loss, len(locals_), t1 - t0, t2 - t1, t2 - t0, scores)
        stats.append(st)
        if on_round is not None:
            on_round(st)
    return stats
