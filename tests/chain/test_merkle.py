"""Results trees: roots and proofs in pure Python, checked against an independent transcription of
OpenZeppelin's ``MerkleProof.processProof`` (commutative keccak256 of sorted pairs) and leaf encoding
(``keccak256(bytes.concat(keccak256(abi.encode(...))))``). On-chain verification (claimReward) is tested
with the task contract."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.chain import ResultsTree, WorkerResult
from refiner.chain.merkle import ZERO, verify

UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
INT256_MIN, INT256_MAX = -(2**255), 2**255 - 1


# ---------------------------------------------------------------------- independent reference


def oz_leaf(worker: str, accepted: bool, samples: int, contribution: int, earned: int) -> bytes:
    """TaskTypes.leafHash / OpenZeppelin StandardMerkleTree leaf, transcribed from the Solidity."""
    encoded = encode(
        ["address", "bool", "uint64", "int256", "uint256"],
        [to_checksum_address(worker), accepted, samples, contribution, earned],
    )
    return keccak(keccak(encoded))


def oz_process_proof(proof: list[bytes], leaf: bytes) -> bytes:
    """MerkleProof.processProof: fold the siblings in with Hashes.commutativeKeccak256."""
    computed = leaf
    for sibling in proof:
        a, b = sorted((computed, sibling))
        computed = keccak(a + b)
    return computed


def oz_verify(proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    return oz_process_proof(proof, leaf) == root


# ---------------------------------------------------------------------- strategies

addresses = st.binary(min_size=20, max_size=20).map(to_checksum_address)


@st.composite
def result_sets(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[WorkerResult]:
    n = draw(st.integers(min_size, max_size))  # sizes spread evenly over the range, up to 40
    workers = draw(st.lists(addresses, min_size=n, max_size=n, unique_by=lambda a: a.lower()))
    return [
        WorkerResult(
            worker=w,
            accepted=draw(st.booleans()),
            samples=draw(st.integers(0, UINT64_MAX)),
            contribution=draw(st.integers(INT256_MIN, INT256_MAX)),
            earned=draw(st.integers(0, UINT256_MAX)),
        )
        for w in workers
    ]


FAST = settings(max_examples=60, deadline=None)


# ---------------------------------------------------------------------- properties


@FAST
@given(result_sets())
def test_every_proof_verifies(results: list[WorkerResult]) -> None:
    tree = ResultsTree(results)
    depth = math.ceil(math.log2(len(results))) if len(results) > 1 else 0
    for r in results:
        leaf = r.leaf()
        assert leaf == oz_leaf(r.worker, r.accepted, r.samples, r.contribution, r.earned)
        proof = tree.proof(r.worker)
        assert len(proof) <= depth
        assert verify(proof, tree.root, leaf)
        assert oz_verify(proof, tree.root, leaf)


@FAST
@given(result_sets(), st.data())
def test_a_proof_for_a_changed_leaf_fails(results: list[WorkerResult], data: st.DataObject) -> None:
    tree = ResultsTree(results)
    r = data.draw(st.sampled_from(results))
    proof = tree.proof(r.worker)
    field = data.draw(st.sampled_from(["worker", "accepted", "samples", "contribution", "earned"]))
    if field == "worker":
        changed = replace(r, worker=data.draw(addresses.filter(lambda a: a.lower() != r.worker.lower())))
    elif field == "accepted":
        changed = replace(r, accepted=not r.accepted)
    elif field == "samples":
        changed = replace(r, samples=data.draw(st.integers(0, UINT64_MAX).filter(lambda s: s != r.samples)))
    elif field == "earned":
        changed = replace(r, earned=data.draw(st.integers(0, UINT256_MAX).filter(lambda e: e != r.earned)))
    else:
        changed = replace(
            r,
            contribution=data.draw(st.integers(INT256_MIN, INT256_MAX).filter(lambda c: c != r.contribution)),
        )
    assert not verify(proof, tree.root, changed.leaf())
    assert not oz_verify(proof, tree.root, changed.leaf())


@FAST
@given(result_sets(min_size=2), st.data())
def test_a_proof_does_not_verify_another_workers_leaf(
    results: list[WorkerResult], data: st.DataObject
) -> None:
    tree = ResultsTree(results)
    a, b = data.draw(st.permutations(results))[:2]
    assert not verify(tree.proof(a.worker), tree.root, b.leaf())


@FAST
@given(result_sets(), st.randoms(use_true_random=False))
def test_root_and_proofs_do_not_depend_on_input_order(
    results: list[WorkerResult], rnd: random.Random
) -> None:
    shuffled = list(results)
    rnd.shuffle(shuffled)
    tree, other = ResultsTree(results), ResultsTree(shuffled)
    assert tree.root == other.root
    for r in results:
        assert tree.proof(r.worker) == other.proof(r.worker)


@FAST
@given(result_sets(), st.data())
def test_a_changed_result_changes_the_root(results: list[WorkerResult], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(results) - 1))
    changed = list(results)
    changed[i] = replace(results[i], accepted=not results[i].accepted)
    assert ResultsTree(changed).root != ResultsTree(results).root


@FAST
@given(result_sets(max_size=20), st.data())
def test_duplicate_workers_are_refused(results: list[WorkerResult], data: st.DataObject) -> None:
    dup = data.draw(st.sampled_from(results))
    # the same address in any letter case, even with a different verdict
    again = replace(dup, worker=data.draw(st.sampled_from([dup.worker, dup.worker.lower()])), samples=1)
    position = data.draw(st.integers(0, len(results)))
    with pytest.raises(ValueError, match="twice"):
        ResultsTree([*results[:position], again, *results[position:]])


@FAST
@given(result_sets())
def test_manifest_counts_only_payable_results(results: list[WorkerResult]) -> None:
    tree = ResultsTree(results)
    manifest = tree.manifest(123, b"\x05" * 32, b"agg", b"det")
    paid = [r for r in results if r.accepted and r.contribution > 0]
    assert manifest.results_root == tree.root
    assert manifest.payees == len(paid)
    assert manifest.total_contribution == sum(r.contribution for r in paid)
    assert (manifest.accuracy, manifest.model_digest) == (123, b"\x05" * 32)
    assert (manifest.aggregate_handle, manifest.details_handle) == (b"agg", b"det")


# ---------------------------------------------------------------------- edge cases


def test_every_tree_shape_from_1_to_40_workers() -> None:
    """Deterministic sweep: every size, so every pattern of odd nodes carried up, is covered."""
    for n in range(1, 41):
        results = [_result(i) for i in range(1, n + 1)]
        tree = ResultsTree(results)
        for r in results:
            proof = tree.proof(r.worker)
            assert oz_verify(proof, tree.root, r.leaf()), (n, r)
            assert not oz_verify(proof, tree.root, replace(r, samples=r.samples + 1).leaf())
        assert ResultsTree(results[::-1]).root == tree.root


def _result(i: int, **kw: object) -> WorkerResult:
    base = WorkerResult(to_checksum_address(i.to_bytes(20, "big")), True, 100 + i, 10 * i)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_empty_tree_root_is_zero() -> None:
    tree = ResultsTree([])
    assert tree.root == ZERO == b"\0" * 32
    m = tree.manifest(0, ZERO)
    assert (m.results_root, m.payees, m.total_contribution) == (ZERO, 0, 0)
    with pytest.raises(KeyError):
        tree.proof(_result(1).worker)


@pytest.mark.parametrize("accepted", [True, False])
def test_single_leaf_root_is_the_leaf(accepted: bool) -> None:
    r = _result(7, accepted=accepted)
    tree = ResultsTree([r])
    assert tree.root == r.leaf()
    assert tree.proof(r.worker) == []
    assert verify([], tree.root, r.leaf())


def test_two_leaves_hash_as_a_sorted_pair() -> None:
    a, b = _result(1), _result(2)
    low, high = sorted((a.leaf(), b.leaf()))
    tree = ResultsTree([a, b])
    assert tree.root == keccak(low + high)
    assert tree.proof(a.worker) == [b.leaf()]
    assert tree.proof(b.worker) == [a.leaf()]


def test_odd_node_is_carried_up_unhashed() -> None:
    results = [_result(i) for i in range(1, 4)]
    l0, l1, l2 = sorted(r.leaf() for r in results)
    tree = ResultsTree(results)
    pair = oz_process_proof([l1], l0)
    assert tree.root == oz_process_proof([l2], pair)
    lone = next(r for r in results if r.leaf() == l2)
    assert tree.proof(lone.worker) == [pair]


def test_leaf_encoding_known_answer() -> None:
    """A fixed vector of keccak256(keccak256(abi.encode(address, bool, uint64, int256, uint256)))."""
    r = WorkerResult("0x" + "11" * 20, True, 1000, -5, 7 * 10**17)
    encoded = (
        bytes(12) + b"\x11" * 20
        + (1).to_bytes(32, "big")
        + (1000).to_bytes(32, "big")
        + (-5).to_bytes(32, "big", signed=True)
        + (7 * 10**17).to_bytes(32, "big")
    )  # fmt: skip
    assert r.leaf() == keccak(keccak(encoded))
    # a 64-byte inner node can never be mistaken for a leaf preimage: leaves hash 160 bytes twice
    assert len(encoded) == 160


def test_lookup_ignores_address_case() -> None:
    results = [_result(i) for i in range(1, 6)]
    tree = ResultsTree(results)
    w = results[2].worker
    assert tree.proof(w.lower()) == tree.proof(w) == tree.proof(to_checksum_address(w))
    assert tree.result_of(w.lower()) == results[2]
    with pytest.raises(KeyError):
        tree.result_of("0x" + "ee" * 20)
    with pytest.raises(KeyError):
        tree.proof("0x" + "ee" * 20)


@given(
    worker=st.binary(min_size=20, max_size=20),
    accepted=st.booleans(),
    samples=st.integers(0, 2**64 - 1),
    contribution=st.integers(-(2**255), 2**255 - 1),
    earned=st.integers(0, 2**256 - 1),
)
def test_leaf_is_the_abi_encoding_double_hashed(
    worker: bytes, accepted: bool, samples: int, contribution: int, earned: int
) -> None:
    """The hand-spelled encoding of WorkerResult.leaf equals eth_abi's (what TaskTypes.leafHash hashes)."""
    address = to_checksum_address(worker)
    abi = encode(
        ["address", "bool", "uint64", "int256", "uint256"], [address, accepted, samples, contribution, earned]
    )
    for spelling in (address, address.lower()):
        assert WorkerResult(spelling, accepted, samples, contribution, earned).leaf() == keccak(keccak(abi))


def test_leaf_refuses_what_the_abi_cannot_encode() -> None:
    good = "0x" + "ab" * 20
    for bad in (
        WorkerResult("0x" + "ab" * 19, True, 1, 1),
        WorkerResult("0x" + "zz" * 20, True, 1, 1),
        WorkerResult(good, True, -1, 1),
        WorkerResult(good, True, 2**64, 1),
        WorkerResult(good, True, 1, 2**255),
        WorkerResult(good, True, 1, 1, -1),
        WorkerResult(good, True, 1, 1, 2**256),
    ):
        with pytest.raises(ValueError):
            bad.leaf()
