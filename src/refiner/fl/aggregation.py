"""Deterministic FedAvg: w = Σ n_i/Σn · w_i."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from refiner.fl.models import State


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


def fedavg(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[int]) -> State:
    """The sample-weighted average of ``states``, bit-for-bit reproducible.

    For each floating tensor: acc = Σ_i n_i · w_i accumulated in float64 in the given order (each
    product n_i · w_i is exact in float64), then acc / Σn once, cast back to the tensor's dtype. Only
    element-wise operations are used, so the result does not depend on the thread count. Non-floating
    tensors (e.g. a BatchNorm's ``num_batches_tracked``) are taken from the first state.
    """
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    check_compatible(states)
    ns = [int(n) for n in weights]
    if any(n <= 0 for n in ns) or any(int(n) != n for n in weights):
        raise ValueError(f"weights must be positive integers (sample counts), got {list(weights)}")
    total = sum(ns)
    out: State = {}
    for name in sorted(states[0]):
        ref = states[0][name]
        if not ref.is_floating_point():
            out[name] = ref.detach().to("cpu").clone().contiguous()
            continue
        acc = torch.zeros(ref.shape, dtype=torch.float64)
        for s, n in zip(states, ns, strict=True):
            acc.add_(s[name].detach().to("cpu", torch.float64), alpha=n)
        out[name] = acc.div_(total).to(ref.dtype).contiguous()
    return out
