"""Deterministic aggregation rules: FedAvg (w = Σ n_i/Σn · w_i), coordinate-wise median and (multi-)Krum.

Every rule is bit-for-bit reproducible: float64 accumulation in a fixed order, only element-wise torch
operations or exact selections (sorting), and Krum's distances summed by numpy's (single-threaded)
pairwise summation, so nothing depends on the torch thread count.

The robust rules ignore the sample counts. They are self-reported and unverifiable: under FedAvg a
Byzantine worker that claims a huge ``n`` dominates the average, so a rule meant to resist Byzantine
workers must not weigh by them (Yin et al. 2018's median and Blanchard et al. 2017's Krum are both
unweighted). The counts are still checked to be positive integers, like FedAvg's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt
import torch

from refiner.fl.models import State

StateLike = Mapping[str, torch.Tensor]


def check_compatible(states: Sequence[Mapping[str, torch.Tensor]]) -> None:
    """Raise ValueError unless all states have the same names, shapes and dtypes."""
    if not states:
        raise ValueError("no states given")
    ref = states[0]
    for i, s in enumerate(states[1:], start=1):
        if set(s) != set(ref):
            raise ValueError(f"state {i} has parameter names {sorted(s)}, state 0 has {sorted(ref)}")
        for k, v in ref.items():
            if s[k].shape != v.shape or s[k].dtype != v.dtype:
                raise ValueError(
                    f"state {i} parameter {k!r} is {tuple(s[k].shape)} {s[k].dtype}, "
                    f"state 0 has {tuple(v.shape)} {v.dtype}"
                )


def checked_weights(states: Sequence[StateLike], weights: Sequence[int]) -> list[int]:
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    check_compatible(states)
    ns = [int(n) for n in weights]
    if any(n <= 0 for n in ns) or any(int(n) != n for n in weights):
        raise ValueError(f"weights must be positive integers (sample counts), got {list(weights)}")
    return ns


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").clone().contiguous()


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[int]) -> State:
    """The sample-weighted average of ``states``, bit-for-bit reproducible.

    For each floating tensor: acc = Σ_i n_i · w_i accumulated in float64 in the given order (each
    product n_i · w_i is exact in float64), then acc / Σn once, cast back to the tensor's dtype. Only
    element-wise operations are used, so the result does not depend on the thread count. Non-floating
    tensors (e.g. a BatchNorm's ``num_batches_tracked``) are taken from the first state.
    """
    ns = checked_weights(states, weights)
    total = sum(ns)
    out: State = {}
    for name in sorted(states[0]):
        ref = states[0][name]
        if not ref.is_floating_point():
            out[name] = _copy(ref)
            continue
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, n in zip(states, ns, strict=True):
            acc.add_(s[name].detach().to("cpu", torch.float64), alpha=n)
        out[name] = acc.div_(total).to(ref.dtype).contiguous()
    return out


def coordinate_median(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The coordinate-wise median (Yin et al. 2018), unweighted.

    Per coordinate, the middle value of the n states; for even n the mean of the two middle values,
    computed in float64 ((a + b) / 2) and cast back. Sorting is exact, so the result is bit-for-bit
    reproducible and independent of the input order. Non-floating tensors come from the first state.
    """
    check_compatible(states)
    n = len(states)
    out: State = {}
    for name in sorted(states[0]):
        ref = states[0][name]
        if not ref.is_floating_point():
            out[name] = _copy(ref)
            continue
        stacked = torch.stack([s[name].detach().to("cpu", torch.float64) for s in states])
        ordered = torch.sort(stacked, dim=0).values
        mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        out[name] = mid.to(ref.dtype, copy=True).contiguous()
    return out


def _flat64(state: StateLike) -> npt.NDArray[np.float64]:
    parts = [
        state[k].detach().to("cpu", torch.float64).reshape(-1).numpy()
        for k in sorted(state)
        if state[k].is_floating_point()
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def squared_distances(states: Sequence[Mapping[str, torch.Tensor]]) -> list[list[float]]:
    """``d[i][j] = ||w_i − w_j||²`` over all floating parameters, in float64.

    Each distance is ``numpy.add.reduce`` (pairwise summation, one thread) of the element-wise squared
    differences of the flattened parameters (sorted names): the same bits on any torch thread count.
    """
    check_compatible(states)
    flat = [_flat64(s) for s in states]
    n = len(flat)
    d = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            diff = flat[i] - flat[j]
            d[i][j] = d[j][i] = float(np.add.reduce(diff * diff))
    return d


def default_byzantine(n: int) -> int:
    """The largest f that Krum tolerates among n updates (n ≥ 2f + 3), or 0 below three updates."""
    return max(0, (n - 3) // 2)


def krum_scores(states: Sequence[Mapping[str, torch.Tensor]], f: int | None = None) -> list[float]:
    """Krum's score of each update: the sum of its squared distances to its n − f − 2 nearest others.

    ``f`` (default :func:`default_byzantine`) is the number of Byzantine updates to tolerate; the
    neighbour count is clamped to [1, n − 1] so that any n ≥ 2 gives scores (Krum's guarantee needs
    n ≥ 2f + 3). The k smallest distances are summed in ascending order.
    """
    n = len(states)
    if f is not None and f < 0:
        raise ValueError(f"f must be ≥ 0, got {f}")
    if n == 1:
        check_compatible(states)
        return [0.0]
    f = default_byzantine(n) if f is None else f
    k = min(n - 1, max(1, n - f - 2))
    d = squared_distances(states)
    scores = []
    for i in range(n):
        nearest = sorted(d[i][j] for j in range(n) if j != i)[:k]
        total = 0.0
        for x in nearest:
            total += x
        scores.append(total)
    return scores


def krum_select(states: Sequence[Mapping[str, torch.Tensor]], f: int | None = None, m: int = 1) -> list[int]:
    """The indices of the ``m`` updates with the lowest Krum scores (ties: the lower index), ascending."""
    if m < 1:
        raise ValueError(f"m must be ≥ 1, got {m}")
    scores = krum_scores(states, f)
    best = sorted(range(len(states)), key=lambda i: (scores[i], i))[: min(m, len(states))]
    return sorted(best)


def krum(states: Sequence[Mapping[str, torch.Tensor]], f: int | None = None, m: int = 1) -> State:
    """Krum (m = 1: the selected update itself) or multi-Krum (the unweighted mean of the m selected
    updates, summed in float64 in index order), after Blanchard et al. 2017."""
    chosen = krum_select(states, f, m)
    return fedavg([states[i] for i in chosen], [1] * len(chosen))


class Aggregator(ABC):
    """An aggregation rule: local states and their sample counts → the new global state."""

    name: ClassVar[str]

    @abstractmethod
    def __call__(self, states: Sequence[StateLike], weights: Sequence[int]) -> State:
        """The aggregate of ``states`` (non-empty, compatible) with sample counts ``weights``."""


class FedAvg(Aggregator):
    """:func:`fedavg`: weighted by the sample counts."""

    name = "fedavg"

    def __call__(self, states: Sequence[StateLike], weights: Sequence[int]) -> State:
        return fedavg(states, weights)

    def __repr__(self) -> str:
        return "FedAvg()"


class Median(Aggregator):
    """:func:`coordinate_median` (the sample counts are checked but not used)."""

    name = "median"

    def __call__(self, states: Sequence[StateLike], weights: Sequence[int]) -> State:
        checked_weights(states, weights)
        return coordinate_median(states)

    def __repr__(self) -> str:
        return "Median()"


class Krum(Aggregator):
    """:func:`krum` with ``f`` Byzantine updates tolerated (default: the most n allows) and multi-Krum
    over ``m`` selected updates (the sample counts are checked but not used)."""

    name = "krum"

    def __init__(self, f: int | None = None, m: int = 1) -> None:
        if f is not None and f < 0:
            raise ValueError(f"f must be ≥ 0, got {f}")
        if m < 1:
            raise ValueError(f"m must be ≥ 1, got {m}")
        self.f, self.m = f, m

    def __call__(self, states: Sequence[StateLike], weights: Sequence[int]) -> State:
        checked_weights(states, weights)
        return krum(states, self.f, self.m)

    def __repr__(self) -> str:
        return f"Krum(f={self.f}, m={self.m})"


AGGREGATORS: dict[str, type[Aggregator]] = {a.name: a for a in (FedAvg, Median, Krum)}


def resolve_aggregator(rule: str | Aggregator, **options: int | None) -> Aggregator:
    """An aggregator by name (``"fedavg"``, ``"median"``, ``"krum"``; options go to its constructor,
    e.g. ``resolve_aggregator("krum", f=2, m=3)``), or ``rule`` itself if it already is one."""
    if isinstance(rule, Aggregator):
        if options:
            raise ValueError("options are only for an aggregator given by name")
        return rule
    try:
        cls = AGGREGATORS[rule]
    except KeyError:
        raise ValueError(f"unknown aggregator {rule!r}: use one of {sorted(AGGREGATORS)}") from None
    try:
        return cls(**options)
    except TypeError as exc:
        raise ValueError(f"bad options {options} for aggregator {rule!r}: {exc}") from None
