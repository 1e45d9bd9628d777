"""Merkle trees of worker results, verifiable by OpenZeppelin's ``MerkleProof`` (sorted-pair hashing).

Leaves are :meth:`WorkerResult.leaf` hashes (double-hashed, as OpenZeppelin's standard tree). Pairs are
hashed in sorted order, so a proof is just the list of siblings from leaf to root; a level with an odd
node carries it up unchanged. Leaves are sorted first, so every validator with the same results builds
the same root whatever order it evaluated the workers in.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import keccak

from refiner.chain.types import Manifest, WorkerResult

ZERO = b"\0" * 32


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class ResultsTree:
    """The results tree of one manifest."""

    def __init__(self, results: Sequence[WorkerResult]) -> None:
        workers = [r.worker.lower() for r in results]
        if len(set(workers)) != len(workers):
            raise ValueError("a worker appears twice in the results")
        self.results = list(results)
        self._leaf_of = {r.worker.lower(): r.leaf() for r in results}
        level = sorted(self._leaf_of.values())
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self._levels.append(nxt)
            level = nxt

    @property
    def root(self) -> bytes:
        """The root; all zeros for an empty tree (no worker submitted)."""
        return self._levels[-1][0] if self._levels[0] else ZERO

    def proof(self, worker: str) -> list[bytes]:
        """Sibling hashes from `worker`'s leaf up to the root."""
        try:
            leaf = self._leaf_of[worker.lower()]
        except KeyError:
            raise KeyError(f"worker {worker} has no result in this tree") from None
        index = self._levels[0].index(leaf)
        proof: list[bytes] = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof

    def manifest(
        self,
        accuracy: int,
        model_digest: bytes,
        aggregate_handle: bytes = b"",
        details_handle: bytes = b"",
    ) -> Manifest:
        """The manifest for these results: payees and total contribution count accepted workers with a
        positive contribution, the only ones that can be paid."""
        paid = [r for r in self.results if r.paid]
        return Manifest(
            results_root=self.root,
            total_contribution=sum(r.contribution for r in paid),
            payees=len(paid),
            accuracy=accuracy,
            model_digest=model_digest,
            aggregate_handle=aggregate_handle,
            details_handle=details_handle,
        )

    def result_of(self, worker: str) -> WorkerResult:
        for r in self.results:
            if r.worker.lower() == worker.lower():
                return r
        raise KeyError(f"worker {worker} has no result in this tree")


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """What MerkleProof.verify computes, in Python."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root
