"""A task's draw never refuses a stake and follows stake for every allowed τ (issue 13, part 6).

Before: τ had no upper bound and the draw used it as is, so w·ln(W/(W−τ)) > 133 refused the largest
stakes (ExpectedSeatsTooLarge) while one-unit Sybils were seated first come, first served up to 256
members. Now τ ≤ 64 and the draw uses τ' = effective_tau(τ, W) ≤ ⌈W/2⌉ (or every unit when τ ≥ W):
every stake is in the domain (worst case one validator with all the stake), the seats of any split
of a stake add up to the same binomial, and the committee has ≤ 256 members except with probability
< 1e-70. Statistics as in test_statistics.py: estimates from N seeded trials within 4 standard errors.
"""

from __future__ import annotations

import math
import statistics

import pytest
from eth_utils import keccak

from refiner.chain import ContractRevert
from refiner.chain.sortition import Sortition
from refiner.sortition import VrfKey, binomial, vrf
from refiner.sortition.binomial import MAX_TAU, SortitionError, committee_seats, effective_tau

TRIALS = 2000
#: Total stakes probed for the domain: every small one, the ones around 2τ, and large ones up to 2^128.
TOTALS = [*range(1, 3000), *(10**k for k in range(4, 39)), 2**127, binomial.MAX_TOTAL_STAKE]


def _output(label: str, trial: int, account: int) -> int:
    """A uniform 256-bit value standing for a VRF output (a VRF output is a PRF of key and seed)."""
    return int.from_bytes(keccak(f"{label}-{trial}-{account}".encode()), "big")


def test_every_stake_is_in_the_domain_for_every_allowed_tau() -> None:
    """The worst case, one validator holding all the stake (w = W), for every τ ≤ 64 and W: in the
    fixed point's domain; the largest w·ln(W/(W − τ')) is 89.03 (τ = 64, W = 127) < 133."""
    worst = 0.0
    for tau in range(1, MAX_TAU + 1):
        for total in TOTALS:
            t = effective_tau(tau, total)
            assert binomial.in_domain(total, t), (tau, total, t)
            assert committee_seats(0, total, total, tau) >= 0
            if t < total:
                assert 2 * t <= total + 1
                worst = max(worst, total * math.log(total / (total - t)))
            else:
                assert t == tau >= total  # every unit is a seat: at most 64 units, 64 members
    assert 89.0 < worst < 89.1 < binomial.max_expected_seats()


def test_before_the_bound_the_largest_stakes_were_refused() -> None:
    """What the unbounded τ did (the reported cases): the raw binomial refuses them, the task draw not."""
    with pytest.raises(SortitionError, match="ExpectedSeatsTooLarge"):
        binomial.seats(0, 150, 250, 148)  # a 60 % holder, τ = 148
    with pytest.raises(SortitionError, match="ExpectedSeatsTooLarge"):
        binomial.seats(0, 40, 66, 64)  # a 60 % holder, τ = 64 used as is with W = 66: 40·ln 33 = 140
    assert committee_seats(0, 40, 66, 64) >= 0  # drawn with τ' = 33
    with pytest.raises(SortitionError, match="TauTooLarge"):
        committee_seats(0, 150, 250, 148)


def test_the_evm_draws_exactly_as_python(sortition: Sortition) -> None:
    """effectiveTau and verifySeats agree with effective_tau and committee_seats bit for bit, the worst
    case (one validator with all the stake, the last output) included; τ > 64 is refused."""
    cases = [
        (tau, total) for tau in (1, 2, 8, 31, 32, 63, 64) for total in (1, 2, 3, 63, 64, 65, 127, 128, 129)
    ]
    cases += [(64, 10**21), (64, 2**128 - 1), (8, 556), (64, 556), (64, 250)]
    for tau, total in cases:
        assert sortition.effective_tau(tau, total) == effective_tau(tau, total), (tau, total)
    for i, (tau, total) in enumerate(cases[::3] + cases[-5:]):
        key = VrfKey.from_seed_bytes(f"bound-{i}".encode())
        seed = i + 1
        proof = vrf.prove(key, seed)
        out = vrf.verify(key.public_key, proof, seed)
        for stake in {1, total // 2 or 1, total}:
            expected = committee_seats(out, stake, total, tau)
            assert sortition.verify_seats(proof, seed, stake, total, tau) == (expected, out)
    worst = (2**256 - 1, 127, 127, effective_tau(64, 127))
    assert sortition.seats(*worst) == binomial.seats(*worst)
    with pytest.raises(ContractRevert) as exc:
        sortition.verify_seats(proof, seed, 1, 10, 65)
    assert (exc.value.error, exc.value.args_by_name) == ("TauTooLarge", {"tau": 65, "maximum": 64})


def _draws(stakes: list[int], tau: int, label: str) -> list[list[int]]:
    total = sum(stakes)
    return [
        [committee_seats(_output(label, t, i), w, total, tau) for i, w in enumerate(stakes)]
        for t in range(TRIALS)
    ]


@pytest.mark.parametrize(
    ("honest", "sybils", "tau"),
    [
        (300, 256, 64),  # reported: 256 one-ETH Sybils (46 %) against a 300-ETH validator, unit 1 ETH
        (300, 256, 8),
        (150, 100, 64),  # reported with τ = 148 (now refused): a 60 % holder against 100 one-unit ids
        (40, 26, 64),  # W = 66 < 2τ: drawn with τ' = 33, where τ as is refused the 60 % holder
    ],
)
def test_a_stake_minority_of_one_unit_sybils_does_not_fill_the_committee(
    honest: int, sybils: int, tau: int
) -> None:
    """The honest holder is never refused; its seats and the Sybils' are Binomial(w, τ'/W) and
    Binomial(W − w, τ'/W) (mean and variance within 4 SE over 2,000 seeds); members stay ≤ 256."""
    stakes = [honest] + [1] * sybils
    total = sum(stakes)
    p = effective_tau(tau, total) / total
    draws = _draws(stakes, tau, f"minority-{honest}-{sybils}-{tau}")
    honest_seats = [row[0] for row in draws]
    sybil_seats = [sum(row[1:]) for row in draws]
    members = [sum(1 for j in row if j) for row in draws]
    for seats, w in ((honest_seats, honest), (sybil_seats, sybils)):
        mean, var = w * p, w * p * (1 - p)
        assert abs(statistics.fmean(seats) - mean) <= 4 * math.sqrt(var / TRIALS), (
            w,
            statistics.fmean(seats),
        )
        kurtosis = (1 - 6 * p * (1 - p)) / var
        se_var = var * math.sqrt(2 / (TRIALS - 1) + kurtosis / TRIALS)
        assert abs(statistics.variance(seats) - var) <= 4 * se_var, (w, statistics.variance(seats))
    assert max(members) < 256
    share = sum(honest_seats) / (sum(honest_seats) + sum(sybil_seats))
    assert abs(share - honest / total) < 0.02  # the weight follows stake
    print(f"honest {honest}/{total}: seat share {share:.3f}, members ≤ {max(members)}")


def test_more_than_256_members_is_beyond_reach() -> None:
    """The members are at most the seats, Binomial(W, τ'/W) with mean τ' ≤ 64: the Chernoff bound
    P(S ≥ 256) ≤ e^-μ (eμ/256)^256 at μ = 64 is below 1e-70."""
    mu = 64
    log10_bound = (-mu + 256 * math.log(math.e * mu / 256)) / math.log(10)
    assert log10_bound < -70
