"""What each worker has earned in a task: the `earned` field of the results leaves (TaskTypes.leafHash).

A round's leaf carries the worker's earnings through that round, so that one claim with its latest leaf
pays every round (claims are once per task, or as often as the worker likes; none pays a round twice).
Honest validators agree on it bit for bit: integers from the task's reward and the consensus results of
earlier rounds, shares rounded down as the contract's per-round division was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from refiner.chain.types import WorkerResult


def round_pay(results: Sequence[WorkerResult], worker_reward: int) -> dict[str, int]:
    """Wei each paid worker (accepted, positive contribution) earns in one round:
    ``worker_reward × contribution // total`` over the round's paid contributions."""
    paid = [r for r in results if r.paid]
    total = sum(r.contribution for r in paid)
    return {r.worker: worker_reward * r.contribution // total for r in paid} if total else {}


def with_earnings(
    results: Sequence[WorkerResult], worker_reward: int, before: Mapping[str, int]
) -> list[WorkerResult]:
    """`results` with `earned` set: each worker's earnings `before` this round (by address, any case)
    plus what it earns in it."""
    earlier = {w.lower(): wei for w, wei in before.items()}
    pay = round_pay(results, worker_reward)
    return [replace(r, earned=earlier.get(r.worker.lower(), 0) + pay.get(r.worker, 0)) for r in results]


def carried(before: Mapping[str, int], results: Sequence[WorkerResult]) -> dict[str, int]:
    """Earnings after a consensus round: the round's leaves replace what the workers in it had earned
    `before` it; workers without a leaf keep theirs (keys lower-case)."""
    after = {w.lower(): wei for w, wei in before.items()}
    after.update({r.worker.lower(): r.earned for r in results})
    return after
