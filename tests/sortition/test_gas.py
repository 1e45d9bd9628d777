"""Gas of verifying a seat claim on chain, and the prover's time.

verifySeats is a view, but it can be sent as a transaction like any function: its gasUsed is what a
claim pays for verification (the task's own claimSeat adds its storage writes and, calling across
contracts, about 2.6k for the call instead of the 21k base). Measured on the embedded chain (py-evm),
stakes counted in wei: the VRF check alone is a 48.6k-62.8k transaction (more hash-to-curve attempts
cost more); the seat count adds ≈ 21-25k for 1-500 ETH of 10,000 ETH (B(0) by squaring: ≈ 0.25k per
bit of the stake) plus ≈ 1.2k per seat won: 70-88k for j = 0 or 1, 100k for j = 25, 108k for j = 32.
"""

from __future__ import annotations

import random
import time

from eth_account.signers.local import LocalAccount

from refiner.chain import Chain
from refiner.chain.sortition import Sortition
from refiner.sortition import binomial, vrf
from refiner.sortition.vrf import VrfKey
from refiner.units import ETH

#: Ceiling for one verifySeats transaction with a valid proof (21k base and calldata included).
VERIFY_SEATS_CEILING = 300_000


def test_verify_seats_transaction_costs_at_most_300k(
    sortition: Sortition, sortition_chain: tuple[Chain, LocalAccount]
) -> None:
    _, sender = sortition_chain
    rng = random.Random(3)
    total = 10_000 * ETH  # stakes counted in wei
    gas_by_seats: dict[int, list[int]] = {}
    cases = [(rng.choice([1, 10, 100, 500]) * ETH, rng.choice([8, 32])) for _ in range(14)]
    cases += [(total, 32), (total // 2, 64)]  # one validator holding everything / half: j ≈ τ
    for i, (stake, tau) in enumerate(cases):
        key = VrfKey.from_seed_bytes(f"gas-{i}".encode())
        seed = rng.getrandbits(256)
        proof = vrf.prove(key, seed)
        out = vrf.verify(key.public_key, proof, seed)
        j = binomial.seats(out, stake, total, tau)
        tx = sortition.verify_seats_transaction(sender, proof, seed, stake, total, tau)
        assert tx.gas_used <= VERIFY_SEATS_CEILING, (j, tx.gas_used)
        gas_by_seats.setdefault(j, []).append(tx.gas_used)
        vrf_only = sortition._send(sender, "randomness", proof.as_tuple(), seed).gas_used
        assert 0 < tx.gas_used - vrf_only <= 30_000 + 1_500 * j, (j, tx.gas_used, vrf_only)
    assert max(gas_by_seats) >= 20  # the whale cases were measured
    print("verifySeats gas by seats won:", {j: max(g) for j, g in sorted(gas_by_seats.items())})


def test_seat_count_gas_stays_bounded_at_the_extremes(
    sortition: Sortition, sortition_chain: tuple[Chain, LocalAccount]
) -> None:
    """The worst output (2^256 − 1: the loop runs to the far tail) for the largest stakes accepted."""
    _, sender = sortition_chain
    worst = {
        "wei whale, tau 32": (2**256 - 1, 10_000 * ETH, 10_000 * ETH, 32),
        "2^127 of 2^128 - 1, tau 100": (2**256 - 1, 2**127, 2**128 - 1, 100),
    }
    for name, args in worst.items():
        gas = sortition._send(sender, "seats", *args).gas_used
        assert gas < 350_000, (name, gas)
        print(f"seats gas, {name}: {gas} for {binomial.seats(*args)} seats")


def test_prover_time() -> None:
    key = VrfKey.from_seed_bytes(b"timing")
    rounds = 200
    start = time.perf_counter()
    for seed in range(rounds):
        vrf.prove(key, seed)
    per_proof = (time.perf_counter() - start) / rounds
    assert per_proof < 0.02  # measured ≈ 0.2 ms (coincurve for the scalar multiplications)
    print(f"prover: {per_proof * 1e3:.2f} ms per proof")
