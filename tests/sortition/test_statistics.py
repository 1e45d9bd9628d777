"""Sortition statistics over real VRF outputs (pure Python, deterministic seeds and keys).

Every comparison below is of an estimate from N independent trials with its exact expected value, with
a tolerance of 4 standard errors (the two-sided probability that a correct implementation lands outside
is 6e-5 per comparison under the normal approximation; the seeds are fixed, so the test is deterministic
and the statistical argument only says it would pass for almost every choice of seeds). A difference of
two independent estimates gets 4·√2 standard errors. Variances: the standard error of a sample variance
is σ²·√(2/(N − 1) + κ/N), κ the excess kurtosis ((1 − 6p(1 − p)) / (w·p(1 − p)) for a binomial).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
from functools import cache

import pytest
from eth_utils import keccak

from refiner.sortition import binomial, vrf
from refiner.sortition.vrf import VrfKey

TRIALS = 2000
TOTAL = 10_000  # stake units
TAU = 32
P = TAU / TOTAL
STAKE = 3_000  # the validator (or adversary) that splits itself
#: Splits of STAKE over k = 1, 2, 5, 10 aliases, deliberately uneven.
SPLITS = {
    1: [3000],
    2: [1000, 2000],
    5: [1, 99, 400, 1000, 1500],
    10: [1, 2, 7, 40, 150, 300, 500, 500, 700, 800],
}


def _seed(label: str, trial: int) -> int:
    return int.from_bytes(keccak(f"{label}-{trial}".encode()), "big")


@cache
def _key(label: str) -> VrfKey:
    return VrfKey.from_seed_bytes(label.encode())


@cache
def _alias_outputs(k: int) -> list[list[int]]:
    """outputs[trial][i]: the VRF output of alias i of the k-way split for trial's seed."""
    keys = [_key(f"alias-{k}-{i}") for i in range(k)]
    return [[vrf.evaluate(key, _seed("sybil", t)) for key in keys] for t in range(TRIALS)]


def _totals(k: int, stakes: Sequence[int], rule: Callable[[int, int], int] | None = None) -> list[int]:
    rule = rule or (lambda r, w: binomial.seats(r, w, TOTAL, TAU))
    return [sum(rule(r, w) for r, w in zip(row, stakes, strict=True)) for row in _alias_outputs(k)]


def _mean_se(variance: float, n: int) -> float:
    return math.sqrt(variance / n)


def _variance_se(variance: float, kurtosis: float, n: int) -> float:
    return variance * math.sqrt(2 / (n - 1) + kurtosis / n)


def _binomial_kurtosis(w: int, p: float) -> float:
    return (1 - 6 * p * (1 - p)) / (w * p * (1 - p))


# ---------------------------------------------------------------------------------- (e) Sybil resistance


def test_splitting_a_stake_over_aliases_leaves_the_seat_distribution_unchanged() -> None:
    mean, var = STAKE * P, STAKE * P * (1 - P)  # Binomial(3000, 0.0032): 9.6 and 9.569
    se_mean = _mean_se(var, TRIALS)  # 0.069
    se_var = _variance_se(var, _binomial_kurtosis(STAKE, P), TRIALS)  # 0.31
    observed = {k: _totals(k, stakes) for k, stakes in SPLITS.items()}
    for k, totals in observed.items():
        assert sum(SPLITS[k]) == STAKE
        assert abs(statistics.fmean(totals) - mean) <= 4 * se_mean, k
        assert abs(statistics.variance(totals) - var) <= 4 * se_var, k
        diff_mean = statistics.fmean(totals) - statistics.fmean(observed[1])
        diff_var = statistics.variance(totals) - statistics.variance(observed[1])
        assert abs(diff_mean) <= 4 * math.sqrt(2) * se_mean, k
        assert abs(diff_var) <= 4 * math.sqrt(2) * se_var, k


def test_the_sybil_check_would_catch_a_rule_that_is_not_stake_additive() -> None:
    """Control: capping every account at one seat (one account, one lottery ticket) rewards splitting,
    and the same comparison flags it by dozens of standard errors."""
    capped = lambda r, w: min(1, binomial.seats(r, w, TOTAL, TAU))  # noqa: E731
    se_mean = _mean_se(STAKE * P * (1 - P), TRIALS)
    one, ten = _totals(1, SPLITS[1], capped), _totals(10, SPLITS[10], capped)
    assert statistics.fmean(ten) - statistics.fmean(one) > 20 * se_mean


def _pmf(w: int, p: float) -> list[float]:
    terms = [(1 - p) ** w]
    for k in range(w):
        terms.append(terms[-1] * (w - k) * p / ((k + 1) * (1 - p)))
        if k > w * p and terms[-1] < 1e-18:
            break
    return terms


def _exact_majority(adversary: int) -> float:
    """P(A > H) for A ~ Bin(adversary, p), H ~ Bin(TOTAL − adversary, p): the adversary holds a strict
    majority of the committee that sortition draws (however either side is split into accounts)."""
    a_pmf, h_pmf = _pmf(adversary, P), _pmf(TOTAL - adversary, P)
    below, h_cdf = 0.0, []
    for h in h_pmf:
        below += h
        h_cdf.append(below)
    return sum(pa * (h_cdf[min(a - 1, len(h_cdf) - 1)] if a else 0.0) for a, pa in enumerate(a_pmf))


def _scaled(split: Sequence[int], total: int) -> list[int]:
    """The split pattern scaled to sum to `total` (largest part absorbs the rounding)."""
    parts = [max(1, part * total // STAKE) for part in split]
    parts[-1] += total - sum(parts)
    return parts


HONEST_VALIDATORS = 10
GRID = [0.40, 0.46, 0.48, 0.50, 0.52, 0.54, 0.60]


def _crossing(points: Sequence[tuple[float, float]]) -> float:
    """The stake fraction where the majority probability crosses 1/2 (linear between grid points)."""
    for (f0, p0), (f1, p1) in itertools.pairwise(points):
        if p0 < 0.5 <= p1:
            return f0 + (0.5 - p0) * (f1 - f0) / (p1 - p0)
    raise AssertionError(f"no crossing in {points}")


def test_stake_needed_for_a_committee_majority_does_not_depend_on_splitting() -> None:
    honest_keys = [_key(f"honest-{i}") for i in range(HONEST_VALIDATORS)]
    honest_outputs = [[vrf.evaluate(key, _seed("sybil", t)) for key in honest_keys] for t in range(TRIALS)]
    exact = {f: _exact_majority(round(f * TOTAL)) for f in GRID}
    honest_seats: dict[float, list[int]] = {}
    for f in GRID:
        honest_stake = TOTAL - round(f * TOTAL)
        honest = [honest_stake // HONEST_VALIDATORS] * HONEST_VALIDATORS
        honest[-1] += honest_stake - sum(honest)
        honest_seats[f] = [
            sum(binomial.seats(r, w, TOTAL, TAU) for r, w in zip(row, honest, strict=True))
            for row in honest_outputs
        ]
    crossings: dict[int, float] = {}
    for k, split in SPLITS.items():
        points = []
        for f in GRID:
            stakes = _scaled(split, round(f * TOTAL))
            adversary_seats = _totals(k, stakes)
            wins = sum(a > h for a, h in zip(adversary_seats, honest_seats[f], strict=True))
            share = wins / TRIALS
            se = math.sqrt(exact[f] * (1 - exact[f]) / TRIALS)  # ≤ 0.0112
            assert abs(share - exact[f]) <= 4 * se, (k, f, share, exact[f])
            points.append((f, share))
        crossings[k] = _crossing(points)
    exact_crossing = _crossing(sorted(exact.items()))  # ≈ 0.508 of the stake
    assert 0.50 < exact_crossing < 0.52
    # Slope of P(majority) near 1/2 is ≈ 4.5 per unit of stake fraction, so the crossing estimate has a
    # standard error ≈ 0.0112 / 4.5 ≈ 0.0025; 0.015 is 6 of them (and covers the linear interpolation).
    for k, crossing in crossings.items():
        assert abs(crossing - exact_crossing) <= 0.015, (k, crossing, exact_crossing)
        assert abs(crossing - crossings[1]) <= 0.015, (k, crossing, crossings[1])


# ---------------------------------------------------------------------------------- (f) committee size

COMMITTEE_SEEDS = 1000


@cache
def _committee() -> tuple[list[int], list[list[int]]]:
    """50 validators with stakes spread over three orders of magnitude and their outputs per seed."""
    rng = random.Random(50)
    stakes = [int(10 ** rng.uniform(0, 3)) for _ in range(50)]  # 1 to 999 units, log-uniform
    keys = [_key(f"committee-{i}") for i in range(50)]
    outputs = [[vrf.evaluate(key, _seed("committee", t)) for key in keys] for t in range(COMMITTEE_SEEDS)]
    return stakes, outputs


@pytest.mark.parametrize("tau", [8, 32])
def test_committee_size_centres_on_tau(tau: int) -> None:
    stakes, outputs = _committee()
    total = sum(stakes)
    assert max(stakes) > 100 * min(stakes)
    p = tau / total
    per_seed = [
        [binomial.seats(r, w, total, tau) for r, w in zip(row, stakes, strict=True)] for row in outputs
    ]
    sizes = [sum(row) for row in per_seed]
    # The committee size is Binomial(W, τ/W): mean τ, variance τ(1 − p).
    var = tau * (1 - p)
    assert abs(statistics.fmean(sizes) - tau) <= 4 * _mean_se(var, COMMITTEE_SEEDS)
    assert abs(statistics.variance(sizes) - var) <= 4 * _variance_se(
        var, _binomial_kurtosis(total, p), COMMITTEE_SEEDS
    )
    # And each validator's seats over all seeds, Binomial(N·w, p), are in proportion to its stake: 5 SE
    # each, so that 50 comparisons together still fail a correct implementation with probability < 1e-4.
    for i, w in enumerate(stakes):
        won = sum(row[i] for row in per_seed)
        expected = COMMITTEE_SEEDS * w * p
        assert abs(won - expected) <= 5 * math.sqrt(expected * (1 - p)), (i, w, won, expected)
