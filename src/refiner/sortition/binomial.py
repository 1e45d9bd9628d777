"""Algorand's stake-weighted sortition in integer fixed point, exactly as ``RefinerSortition.seats`` does it.

A validator holding `stake` units (w) of `total_stake` (W), with expected committee size τ and VRF output
r, gets the number of seats j such that r / 2^256 falls in the j-th interval of the Binomial(w, p = τ/W)
distribution: the smallest j with r / 2^256 < Σ_{k≤j} B(k; w, p) (Algorand, Gilad et al., SOSP 2017, §5).
Each stake unit is an independent "sub-user" selected with probability p, so splitting a stake over
several accounts does not change the distribution of the total (Binomial(a, p) + Binomial(b, p) is
Binomial(a + b, p)): the Sybil resistance of the paper's §2.2.

Fixed point (every operation below is reproduced bit for bit by the contract):

* Values are unsigned integers scaled by ONE = 2^255 ("Q255"); 1.0 itself fits in a uint256.
* ``q = ⌊(W − τ)·ONE / W⌋`` is 1 − p; ``B(0) = q^w`` by exponentiation by squaring (no squaring after
  the last bit), each product ``⌊a·b / ONE⌋`` (on chain from the exact 512-bit product).
* ``B(k+1) = ⌊B(k)·(w − k)·τ / ((k + 1)·(W − τ))⌋`` (OpenZeppelin ``Math.mulDiv`` on chain) — the ratio
  p / (1 − p) = τ / (W − τ) is used exactly, as integers, so p itself is never rounded.
* Every step rounds down (towards zero), so each computed term is at most the exact one and the computed
  CDF never exceeds the exact CDF. With B(0) ≥ 2^-192 (below) every intermediate of the squaring is
  ≥ 2^-192, so each rounding costs at most 2^-63 relative and the terms stay within 2^-50 of the exact
  ones (measured: far closer); r lands on the wrong side of a boundary with probability < 2^-50.
* r is compared as ``r >> 1 < CDF``, which is exactly ``r / 2^256 < CDF / 2^255`` (CDF is an integer).
* The loop stops at the first j with ``r >> 1 < CDF(j)``; at the first j whose term rounded to 0 (then
  every later term is 0 and r lies in the rounding gap at the very top of [0, 2^256), probability
  < 2^-50: the far upper tail); or at j = w. So j ≤ w always, and the loop runs j times.

Domain (refused with :class:`SortitionError`, on chain with the same-named custom errors):

* ``stake ≤ total_stake`` (``StakeExceedsTotal``) and ``total_stake < 2^128`` (``TotalStakeTooLarge``),
  so that (w − k)·τ and (k + 1)·(W − τ) fit in 256 bits. Stakes may be counted in any unit, wei
  included: the cost grows with log2(w) (squarings) and with the number of seats, not with w.
* ``B(0) ≥ 2^-192`` (``ExpectedSeatsTooLarge``), i.e. w·ln(W / (W − τ)) ≤ 192·ln 2 ≈ 133: the first
  term then keeps at least 63 significant bits. When τ ≪ W this is "the validator expects at most ~133
  seats". B(0) falls as w grows, so w = W is the worst case: :func:`in_domain` tells whether every
  stake of a total is accepted. W·ln(W / (W − τ)) falls as W grows (from 1.39·τ at W = 2τ towards τ),
  so **τ ≤ 96 with W ≥ 2τ is always in the domain**.
* Trivial cases first, in this order: w = 0 → 0; then the two range checks; τ = 0 → 0; τ ≥ W (p ≥ 1,
  every unit selected) → w.

A task's draw (:func:`committee_seats`, on chain ``verifySeats``) takes τ ≤ MAX_TAU = 64 and draws with
τ' = :func:`effective_tau` (τ, W): τ itself when τ ≥ W (every unit a seat) or τ ≤ ⌈W/2⌉, else ⌈W/2⌉.
Then W·ln(W / (W − τ')) ≤ 89.1 (the worst case is τ = 64, W = 127), so **every stake is in the domain**
and no honest claim is ever refused with ``ExpectedSeatsTooLarge``; the seats of all validators add up
to Binomial(W, τ'/W) with mean τ' ≤ 64, so more than 256 members has probability < 1e-70 (Chernoff:
e^-64·(64e/256)^256).
"""

from __future__ import annotations

import math

#: 1.0 in the Q255 fixed point of the contract.
ONE = 1 << 255
#: Total stake must be below this (in whatever integer unit stakes are counted).
MAX_TOTAL_STAKE = (1 << 128) - 1
#: Smallest accepted B(0) in Q255 units: 2^63 / 2^255 = 2^-192.
MIN_FIRST_TERM = 1 << 63
#: Largest expected committee size a task may ask for (``RefinerSortition.MAX_TAU``).
MAX_TAU = 64


class SortitionError(ValueError):
    """The arguments are outside the domain the contract accepts (the contract reverts likewise)."""

    def __init__(self, error: str, **args: int) -> None:
        self.error = error
        self.args_by_name = args
        shown = ", ".join(f"{k}={v}" for k, v in args.items())
        super().__init__(f"{error}({shown})")


def _mul_div(a: int, b: int, denominator: int) -> int:
    """⌊a·b / denominator⌋ — OpenZeppelin ``Math.mulDiv`` (its result always fits here)."""
    return a * b // denominator


def first_term(stake: int, total_stake: int, tau: int) -> int:
    """B(0) = (1 − τ/W)^w in Q255, by exponentiation by squaring exactly as the contract computes it.

    Requires 0 < τ < W (the caller handles the trivial cases)."""
    base = _mul_div(total_stake - tau, ONE, total_stake)
    result = ONE
    exponent = stake
    while True:
        if exponent & 1:
            result = _mul_div(result, base, ONE)
        exponent >>= 1
        if exponent == 0:
            return result
        base = _mul_div(base, base, ONE)


def seats(output: int, stake: int, total_stake: int, tau: int) -> int:
    """Seats won by a validator with `stake` of `total_stake` units for VRF `output`, expected committee
    size `tau` — the same integer ``RefinerSortition.seats`` returns."""
    if not 0 <= output < 1 << 256:
        raise ValueError("output must be a uint256")
    if min(stake, total_stake, tau) < 0:
        raise ValueError("stake, total_stake and tau must be non-negative")
    if stake == 0:
        return 0
    if stake > total_stake:
        raise SortitionError("StakeExceedsTotal", stake=stake, totalStake=total_stake)
    if total_stake > MAX_TOTAL_STAKE:
        raise SortitionError("TotalStakeTooLarge", totalStake=total_stake)
    if tau == 0:
        return 0
    if tau >= total_stake:
        return stake
    u = output >> 1
    rest = total_stake - tau
    term = first_term(stake, total_stake, tau)
    if term < MIN_FIRST_TERM:
        raise SortitionError("ExpectedSeatsTooLarge", stake=stake, totalStake=total_stake, tau=tau)
    cdf = term
    j = 0
    while u >= cdf and j < stake:
        term = _mul_div(term, (stake - j) * tau, (j + 1) * rest)
        j += 1
        if term == 0:
            break
        cdf += term
    return j


def effective_tau(tau: int, total_stake: int) -> int:
    """The τ' a task's draw among `total_stake` units uses (``RefinerSortition.effectiveTau``)."""
    if tau >= total_stake:
        return tau
    return min(tau, (total_stake + 1) // 2)


def committee_seats(output: int, stake: int, total_stake: int, tau: int) -> int:
    """Seats a validator wins in a task's draw, as ``RefinerSortition.verifySeats`` counts them."""
    if tau > MAX_TAU:
        raise SortitionError("TauTooLarge", tau=tau, maximum=MAX_TAU)
    return seats(output, stake, total_stake, effective_tau(tau, total_stake))


def in_domain(total_stake: int, tau: int) -> bool:
    """Whether :func:`seats` (and the contract) accepts every stake from 0 to `total_stake` with this τ."""
    try:
        seats(0, total_stake, total_stake, tau)
    except SortitionError:
        return False
    return True


def expected_seats(stake: int, total_stake: int, tau: int) -> float:
    """The mean of the seat count: w·min(1, τ/W)."""
    if stake == 0:
        return 0.0
    return stake * min(1.0, tau / total_stake)


def seats_variance(stake: int, total_stake: int, tau: int) -> float:
    """The variance of the seat count, w·p·(1 − p) with p = min(1, τ/W)."""
    if stake == 0:
        return 0.0
    p = min(1.0, tau / total_stake)
    return stake * p * (1 - p)


def max_expected_seats() -> float:
    """The largest w·ln(W / (W − τ)) the domain allows (≈ the expected seats when τ ≪ W): 192·ln 2."""
    return 192 * math.log(2)
