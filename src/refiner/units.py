"""Units defined once: the contract's fixed point and Ether. Imports nothing of Refiner's, so every layer
(fl, chain, roles, audit, web) may use it.

Accuracies, losses, contributions, trust scores, ε and FedProx μ travel on chain and in manifests as
integers in parts per million (``ONE``); amounts are integer wei, shown in ETH.
"""

from __future__ import annotations

import math
from decimal import Decimal

#: Fixed-point scale on chain and in manifests: 6 decimals (ppm).
ONE = 1_000_000
#: Losses and contributions are clamped to ±1e9 (a NaN or infinite loss counts as the maximum).
MAX_PPM = 10**15
#: Wei in one Ether.
ETH = 10**18


def to_fixed(x: float) -> int:
    """`x` in the 6-decimal fixed point; ValueError for a NaN or an infinite result."""
    try:
        return round(x * ONE)
    except OverflowError:
        raise ValueError(f"{x} is too large for a fixed-point fraction") from None


def from_fixed(n: int) -> float:
    """A fixed-point integer as the fraction it stands for."""
    return n / ONE


def quantize(x: float) -> int:
    """``x`` in ppm on the 1e-5 grid, ``round(x · 1e5) · 10``; NaN/±Inf and huge values clamp to
    ±MAX_PPM. Every loss and contribution is rounded to it before it is compared or voted on, so that
    honest validators agree bit for bit whatever float noise lies below it."""
    if math.isnan(x):
        return MAX_PPM
    if math.isinf(x) or abs(x) * 100_000 >= MAX_PPM // 10:
        return MAX_PPM if x > 0 else -MAX_PPM
    return round(x * 100_000) * 10


def ether(wei: int) -> str:
    """`wei` in ether for people, to 6 decimals: 1.5 ETH, 997.995194 ETH (tiny amounts: 1000 wei)."""
    text = f"{Decimal(wei) / ETH:.6f}".rstrip("0").rstrip(".")
    return f"{wei} wei" if text == "0" and wei else f"{text} ETH"
