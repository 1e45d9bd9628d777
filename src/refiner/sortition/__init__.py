"""Validator committee selection (paper §2.3.3): Chainlink's secp256k1 VRF and Algorand's stake-weighted
cryptographic sortition, in Python mirrors of what ``RefinerSortition.sol`` checks on chain."""

from refiner.sortition.binomial import (
    MAX_TAU,
    MAX_TOTAL_STAKE,
    ONE,
    SortitionError,
    committee_seats,
    effective_tau,
    expected_seats,
    in_domain,
    seats,
    seats_variance,
)
from refiner.sortition.vrf import (
    Proof,
    VrfError,
    VrfKey,
    evaluate,
    hash_to_curve,
    key_hash,
    output,
    prove,
    verify,
)

__all__ = [
    "MAX_TAU",
    "MAX_TOTAL_STAKE",
    "ONE",
    "Proof",
    "SortitionError",
    "VrfError",
    "VrfKey",
    "committee_seats",
    "effective_tau",
    "evaluate",
    "expected_seats",
    "hash_to_curve",
    "in_domain",
    "key_hash",
    "output",
    "prove",
    "seats",
    "seats_variance",
    "verify",
]
