"""Python mirrors of the task contract's types (contracts/TaskTypes.sol) and its hashing rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address

from refiner.units import from_fixed, to_fixed

#: The task's events that carry an indexed ``round`` (contracts/RefinerTask.sol): what happened in a round.
ROUND_EVENTS = (
    "RoundStarted",
    "TrainingResultsSubmitted",
    "ManifestCommitted",
    "ManifestRevealed",
    "RoundFinalized",
    "NoConsensus",
    "RewardClaimed",
    "EscrowReleased",
)
#: The event of every phase change (its ``round`` is not indexed).
PHASE_EVENT = "StatusChanged"

#: Longest a timed phase may last (TaskTypes.MAX_DURATION).
MAX_DURATION = 30 * 86400


#: ε for "no absolute bound": above the validation loss of any model that computes at all (NaN and
#: infinite losses count as 1e9 and still fail it), so only the contribution measure's screen qualifies.
NO_EPSILON = 1e8


def epsilon_text(epsilon: float) -> str:
    """ε as people read it: ``none`` for :data:`NO_EPSILON` (or above), else the number."""
    return "none" if epsilon >= NO_EPSILON else f"{epsilon:g}"


class Status(IntEnum):
    PENDING = 0
    RECRUITING = 1
    TRAINING = 2
    EVALUATING = 3
    REVEALING = 4
    REWARDING = 5
    TERMINATED = 6


class Aggregation(IntEnum):
    FedAvg = 0
    FedProx = 1


class TerminationReason(IntEnum):
    MaxRounds = 0
    TargetReached = 1
    Stopped = 2
    Idle = 3


@dataclass(frozen=True)
class Durations:
    """Seconds per timed phase (see TaskTypes.Durations)."""

    recruitment: int = 3600
    training: int = 3600
    evaluation: int = 1800
    reveal: int = 1800
    idle: int = 7 * 86400
    claim: int = 30 * 86400

    def as_tuple(self) -> tuple[int, ...]:
        return (self.recruitment, self.training, self.evaluation, self.reveal, self.idle, self.claim)


@dataclass(frozen=True)
class TaskConfig:
    """A task's configuration, fixed at deployment. Fractions are floats here, fixed point on chain.
    `sign_up_deposit` (wei) is what each worker pays to sign up, back with its round-1 submission."""

    description: str
    worker_reward: int
    validator_reward: int
    target_accuracy: float = 0.99
    max_rounds: int = 10
    max_workers: int = 5
    committee_size: int = 8
    epsilon: float = 1.0
    aggregation: Aggregation = Aggregation.FedAvg
    mu: float = 0.0
    durations: Durations = field(default_factory=Durations)
    sign_up_deposit: int = 0

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.description,
            to_fixed(self.target_accuracy),
            self.max_rounds,
            self.max_workers,
            self.committee_size,
            to_fixed(self.epsilon),
            int(self.aggregation),
            to_fixed(self.mu),
            self.worker_reward,
            self.validator_reward,
            self.durations.as_tuple(),
            self.sign_up_deposit,
        )

    @classmethod
    def from_tuple(cls, t: Any) -> TaskConfig:
        return cls(
            description=t[0],
            target_accuracy=from_fixed(t[1]),
            max_rounds=t[2],
            max_workers=t[3],
            committee_size=t[4],
            epsilon=from_fixed(t[5]),
            aggregation=Aggregation(t[6]),
            mu=from_fixed(t[7]),
            worker_reward=t[8],
            validator_reward=t[9],
            durations=Durations(*t[10]),
            sign_up_deposit=t[11],
        )


@dataclass(frozen=True)
class WorkerResult:
    """One leaf of a manifest's results tree: a validator's verdict on one worker in one round.

    `contribution` is the task's measure in fixed point (an integer, may be negative): a leave-one-out
    or Shapley loss difference, or a trusted-data share of the round's samples. `earned` is what the
    worker has earned in the task through this round, in wei (`refiner.protocol.earnings`): a claim with
    the leaf pays it, less what earlier claims paid.
    """

    worker: str
    accepted: bool
    samples: int
    contribution: int
    earned: int = 0

    def leaf(self) -> bytes:
        """keccak256(keccak256(abi.encode(worker, accepted, samples, contribution, earned))):
        TaskTypes.leafHash."""
        # the ABI encoding spelled out (five 32-byte words): eth_abi took ~0.5 ms a leaf, and every
        # worker's claim rebuilds a tree of all the round's leaves (O(N²) hashing for a round)
        worker = self.worker.removeprefix("0x").removeprefix("0X")
        if len(worker) != 40:
            raise ValueError(f"not an address: {self.worker!r}")
        if not 0 <= self.samples < 1 << 64 or not -(1 << 255) <= self.contribution < 1 << 255:
            raise ValueError(f"samples or contribution out of range in {self}")
        if not 0 <= self.earned < 1 << 256:
            raise ValueError(f"earned out of range in {self}")
        encoded = (
            bytes(12)
            + bytes.fromhex(worker)
            + int(bool(self.accepted)).to_bytes(32, "big")
            + self.samples.to_bytes(32, "big")
            + self.contribution.to_bytes(32, "big", signed=True)
            + self.earned.to_bytes(32, "big")
        )
        return keccak(keccak(encoded))

    @property
    def paid(self) -> bool:
        return self.accepted and self.contribution > 0


_MANIFEST_TYPES = "(bytes32,uint256,uint32,uint32,bytes32,bytes,bytes)"
_MANIFEST_FIELDS = (
    "resultsRoot",
    "totalContribution",
    "payees",
    "accuracy",
    "modelDigest",
    "aggregateHandle",
    "detailsHandle",
)


@dataclass(frozen=True)
class Manifest:
    """What a validator commits to and reveals (TaskTypes.Manifest)."""

    results_root: bytes
    total_contribution: int
    payees: int
    accuracy: int  # fixed point, ONE = 100 %
    model_digest: bytes
    aggregate_handle: bytes = b""
    details_handle: bytes = b""

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.results_root,
            self.total_contribution,
            self.payees,
            self.accuracy,
            self.model_digest,
            self.aggregate_handle,
            self.details_handle,
        )

    @classmethod
    def from_tuple(cls, t: Any) -> Manifest:
        """From a call result (a tuple) or a decoded event argument (a mapping by field name)."""
        if hasattr(t, "keys"):
            t = [t[k] for k in _MANIFEST_FIELDS]
        return cls(bytes(t[0]), t[1], t[2], t[3], bytes(t[4]), bytes(t[5]), bytes(t[6]))

    @classmethod
    def empty(cls) -> Manifest:
        return cls(b"\0" * 32, 0, 0, 0, b"\0" * 32)

    def hash(self) -> bytes:
        """keccak256(abi.encode(manifest)): what a commitment binds (handles included)."""
        return keccak(encode([_MANIFEST_TYPES], [self.as_tuple()]))

    def vote_key(self) -> bytes:
        """Hash of the deterministic part, top bit cleared (TaskTypes.voteKey): equal results give equal
        keys."""
        digest = keccak(
            encode(
                ["bytes32", "uint256", "uint32", "uint32", "bytes32"],
                [self.results_root, self.total_contribution, self.payees, self.accuracy, self.model_digest],
            )
        )
        return bytes([digest[0] & 0x7F]) + digest[1:]


def commitment(
    chain_id: int, task: str, round_: int, validator: str, manifest_hash: bytes, salt: bytes
) -> bytes:
    """The value `commitManifest` expects, as RefinerTask.commitmentOf."""
    return keccak(
        encode(
            ["uint256", "address", "uint32", "address", "bytes32", "bytes32"],
            [
                chain_id,
                to_checksum_address(task),
                round_,
                to_checksum_address(validator),
                manifest_hash,
                salt,
            ],
        )
    )


@dataclass(frozen=True)
class RoundInfo:
    submissions: int
    commits: int
    reveals: int
    payees: int
    accuracy: int
    finalized: bool
    total_weight: int  # the committee's, copied when the round starts
    consensus_key: bytes
    results_root: bytes
    total_contribution: int
    model_digest: bytes

    @classmethod
    def from_tuple(cls, t: Any) -> RoundInfo:
        return cls(*t)

    @property
    def consensus(self) -> bool:
        return self.consensus_key != b"\0" * 32


@dataclass(frozen=True)
class ValidatorInfo:
    stake: int
    unbonding: int
    unbonding_ends: int
    active_seats: int
    registered: bool
    locked_until: int = 0  # seats lock the stake until then (or until their tasks terminate)
