"""The fixed-point binomial: Python and the EVM agree bit for bit, and both agree with the exact
rational Algorand rule (away from a 2^-50-wide rounding sliver at each interval boundary)."""

from __future__ import annotations

import random
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest

from refiner.chain import ContractRevert
from refiner.chain.sortition import Sortition
from refiner.sortition import binomial
from refiner.sortition.binomial import MAX_TOTAL_STAKE, ONE, SortitionError

TOP = 2**256 - 1
EDGE_OUTPUTS = [0, 1, 2**255 - 1, 2**255, TOP]


def _python(r: int, w: int, total: int, tau: int) -> int | str:
    try:
        return binomial.seats(r, w, total, tau)
    except SortitionError as exc:
        return exc.error


def _chain(sortition: Sortition, r: int, w: int, total: int, tau: int) -> int | str:
    try:
        return sortition.seats(r, w, total, tau)
    except ContractRevert as exc:
        return exc.error


def _cases() -> list[tuple[int, int, int, int]]:
    """(r, w, W, τ): random and edge cases over unit sizes from a handful of units to wei."""
    rng = random.Random(7)
    cases: list[tuple[int, int, int, int]] = []
    regimes = [
        (lambda: rng.randrange(1, 200), (1, 2, 5, 8)),  # a few coarse stake units
        (lambda: rng.randrange(200, 100_000), (5, 8, 32, 100)),  # fine units
        (lambda: rng.randrange(10**6, 10**8), (8, 32, 64)),  # a million units and up
        (lambda: rng.randrange(10**21, 10**24), (8, 32, 100)),  # wei
    ]
    for total_of, taus in regimes:
        for _ in range(45):
            total = total_of()
            w = rng.choice([1, total, rng.randrange(1, total + 1), max(1, total // rng.randrange(2, 50))])
            r = rng.choice([rng.getrandbits(256), rng.getrandbits(256), rng.choice(EDGE_OUTPUTS)])
            cases.append((r, w, total, rng.choice(taus)))
    big = 10**6  # a stake of a million units, the whole stake or a tenth of it
    for r in EDGE_OUTPUTS:
        cases += [
            (r, 0, 100, 8),  # no stake
            (r, 0, 0, 8),  # no stake, no total: 0 before any check
            (r, 50, 50, 8),  # w = W
            (r, 7, 10, 10),  # τ = W: every unit selected
            (r, 7, 10, 11),  # τ > W
            (r, 7, 10, 0),  # τ = 0
            (r, 1, 1, 1),
            (r, big, big, 32),
            (r, big // 10, big, 32),
            (r, big, 10 * big, 64),
            (r, MAX_TOTAL_STAKE, MAX_TOTAL_STAKE, 100),
            (r, 2**127, MAX_TOTAL_STAKE, 100),
            (r, 1, MAX_TOTAL_STAKE, 1),
            (r, 8, 10, 9),  # p = 0.9
            (r, 11, 10, 5),  # StakeExceedsTotal
            (r, 1, MAX_TOTAL_STAKE + 1, 8),  # TotalStakeTooLarge
            (r, 10**4, 10**4, 200),  # ExpectedSeatsTooLarge: w·ln(W/(W−τ)) ≈ 202 > 133
        ]
    return cases


def test_python_and_evm_agree_bit_for_bit(sortition: Sortition) -> None:
    cases = _cases()
    assert len(cases) >= 250
    outcomes: set[str] = set()
    for r, w, total, tau in cases:
        expected = _python(r, w, total, tau)
        assert _chain(sortition, r, w, total, tau) == expected, (r, w, total, tau)
        outcomes.add(expected if isinstance(expected, str) else "seats")
    assert outcomes == {"seats", "StakeExceedsTotal", "TotalStakeTooLarge", "ExpectedSeatsTooLarge"}


def test_refusals_carry_their_arguments(sortition: Sortition) -> None:
    with pytest.raises(ContractRevert) as exc:
        sortition.seats(5, 11, 10, 5)
    assert exc.value.error == "StakeExceedsTotal"
    assert exc.value.args_by_name == {"stake": 11, "totalStake": 10}
    with pytest.raises(SortitionError) as py_exc:
        binomial.seats(5, 11, 10, 5)
    assert py_exc.value.args_by_name == exc.value.args_by_name
    with pytest.raises(ContractRevert) as exc:
        sortition.seats(5, 10**4, 10**4, 200)
    assert exc.value.args_by_name == {"stake": 10**4, "totalStake": 10**4, "tau": 200}
    assert sortition.max_total_stake() == MAX_TOTAL_STAKE


def test_trivial_cases() -> None:
    for r in EDGE_OUTPUTS:
        assert binomial.seats(r, 0, 0, 5) == 0
        assert binomial.seats(r, 3, 10, 0) == 0
        assert binomial.seats(r, 3, 10, 10) == 3
        assert binomial.seats(r, 3, 10, 10**9) == 3
    assert binomial.seats(0, 5, 100, 8) == 0  # r = 0 is below B(0) > 0
    with pytest.raises(ValueError):
        binomial.seats(2**256, 1, 2, 1)


def test_seats_never_exceed_the_stake_and_the_top_output_ends_in_the_far_tail() -> None:
    """At r = 2^256 − 1 the loop runs to the first term that rounds to 0: far above the mean, bounded."""
    for w, total, tau in [(1, 100, 8), (5, 10, 5), (10**6, 10**6, 32), (10**18, 10**21, 32), (8, 10, 9)]:
        j = binomial.seats(TOP, w, total, tau)
        mean = binomial.expected_seats(w, total, tau)
        assert mean <= j <= w
        assert j <= max(6 * mean, mean + 60)


def _exact_seats(r: int, w: int, total: int, tau: int) -> int:
    """Algorand's rule in exact rationals: the smallest j with r / 2^256 < Σ_{k≤j} B(k; w, τ/W)."""
    p = Fraction(tau, total)
    target = Fraction(r, 2**256)
    term, cdf = (1 - p) ** w, Fraction(0)
    for j in range(w + 1):
        cdf += term
        if target < cdf:
            return j
        term = term * (w - j) * p / ((j + 1) * (1 - p))
    return w


def _exact_cdf(j: int, w: int, total: int, tau: int) -> Fraction:
    p = Fraction(tau, total)
    term, cdf = (1 - p) ** w, Fraction(0)
    for k in range(j + 1):
        cdf += term
        term = term * (w - k) * p / ((k + 1) * (1 - p))
    return cdf


def test_fixed_point_equals_the_exact_rule() -> None:
    rng = random.Random(11)
    compared = 0
    for _ in range(400):
        total = rng.randrange(2, 400)
        w = rng.randrange(1, min(total, 80) + 1)
        tau = rng.randrange(1, total)
        r = rng.getrandbits(256)
        try:
            got = binomial.seats(r, w, total, tau)
        except SortitionError:
            continue
        assert got == _exact_seats(r, w, total, tau), (r, w, total, tau)
        compared += 1
    assert compared >= 300


def test_rounding_direction_at_interval_boundaries() -> None:
    """Every fixed-point term rounds down, so the computed CDF is at most the exact one: an output just
    below an exact boundary may get one seat more, never one fewer; 2^-50 away, the two agree."""
    rng = random.Random(13)
    checked = 0
    for _ in range(150):
        total = rng.randrange(10, 1000)
        w = rng.randrange(1, min(total, 60) + 1)
        tau = rng.randrange(1, max(2, total // 3))
        j = rng.randrange(0, w)
        boundary = _exact_cdf(j, w, total, tau) * 2**256  # outputs below it get at most j seats
        if boundary >= 2**256 - 2**210:
            continue
        just_below = -(-boundary.numerator // boundary.denominator) - 1
        assert binomial.seats(just_below, w, total, tau) in (j, j + 1)
        assert binomial.seats(just_below - 2**206, w, total, tau) == j
        assert binomial.seats(just_below + 2**206, w, total, tau) == j + 1
        checked += 1
    assert checked >= 100


def test_first_term_keeps_fifty_bits_across_the_domain() -> None:
    """B(0) = (1 − τ/W)^w by squaring in Q255, against a 120-digit decimal, up to the domain's edge."""
    params = [
        (1, 2, 1),
        (1, 10, 9),
        (3, 10, 9),
        (50, 50, 8),
        (10**4, 10**4, 90),  # w·ln(W/(W−τ)) ≈ 90.4
        (10**4, 10**4, 132),  # ≈ 133, just inside
        (10**6, 10**6, 130),
        (10**18, 10**21, 32),
        (10**24, 10**24, 100),
        (2**127, MAX_TOTAL_STAKE, 100),
        (MAX_TOTAL_STAKE, MAX_TOTAL_STAKE, 1),
    ]
    with localcontext() as ctx:
        ctx.prec = 120
        for w, total, tau in params:
            computed = binomial.first_term(w, total, tau)
            exact = (Decimal(total - tau) / Decimal(total)) ** w * Decimal(ONE)
            assert computed >= binomial.MIN_FIRST_TERM, (w, total, tau)
            assert Decimal(computed) <= exact + 1
            assert abs(Decimal(computed) - exact) / exact < Decimal(2) ** -50, (w, total, tau)


def test_domain_edge_matches_the_stated_bound() -> None:
    """Refused exactly when (1 − τ/W)^w < 2^-192, i.e. w·ln(W/(W−τ)) > 192·ln 2 ≈ 133.1."""
    assert binomial.seats(2**255, 10**4, 10**4, 132) >= 0
    with pytest.raises(SortitionError, match="ExpectedSeatsTooLarge"):
        binomial.seats(2**255, 10**4, 10**4, 134)
    assert round(binomial.max_expected_seats(), 1) == 133.1


def test_tau_up_to_96_with_total_at_least_twice_tau_is_always_in_the_domain() -> None:
    """The configuration rule for tasks: W·ln(W / (W − τ)) falls as W grows, 1.39·τ ≤ 133 at W = 2τ."""
    for tau in range(1, 97):
        for total in [*range(2 * tau, 2 * tau + 20), 10 * tau, 10**6, 10**21]:
            assert binomial.in_domain(total, tau), (total, tau)
    assert binomial.in_domain(10**21, 133) and not binomial.in_domain(10**21, 134)
    assert not binomial.in_domain(10**4, 200)
    assert binomial.in_domain(5, 5)  # τ ≥ W: every unit is selected, no binomial at all
