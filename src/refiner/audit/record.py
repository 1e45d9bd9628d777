"""A task's public record, read once from the chain: every protocol event, grouped by round."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from eth_utils import to_checksum_address

from refiner.chain import Event, Manifest, RoundInfo, Task, TaskConfig
from refiner.chain.types import ROUND_EVENTS


@dataclass(frozen=True)
class Reveal:
    validator: str
    manifest: Manifest
    vote_key: bytes
    event: Event
    salt: bytes = bytes(32)  # opens the validator's stored details


@dataclass
class RoundRecord:
    round: int
    info: RoundInfo
    events: dict[str, list[Event]] = field(default_factory=lambda: defaultdict(list))

    def of(self, name: str) -> list[Event]:
        return self.events.get(name, [])

    @property
    def started(self) -> Event | None:
        return next(iter(self.of("RoundStarted")), None)

    @property
    def submissions(self) -> dict[str, int]:
        """Worker → samples it submitted (the contract allows one submission per worker and round)."""
        return {
            to_checksum_address(e["worker"]): int(e["samples"]) for e in self.of("TrainingResultsSubmitted")
        }

    @property
    def commitments(self) -> dict[str, bytes]:
        return {
            to_checksum_address(e["validator"]): bytes(e["commitment"]) for e in self.of("ManifestCommitted")
        }

    @property
    def reveals(self) -> list[Reveal]:
        return [
            Reveal(
                to_checksum_address(e["validator"]),
                Manifest.from_tuple(e["manifest"]),
                bytes(e["voteKey"]),
                e,
                bytes(e["salt"]),
            )
            for e in self.of("ManifestRevealed")
        ]

    @property
    def agreeing(self) -> list[Reveal]:
        """The reveals of the consensus manifest (none without consensus)."""
        if not self.info.consensus:
            return []
        return [r for r in self.reveals if r.vote_key == self.info.consensus_key]

    @property
    def pools(self) -> tuple[int, int]:
        """(worker reward, validator reward) escrowed when the round started."""
        e = self.started
        return (int(e["workerReward"]), int(e["validatorReward"])) if e else (0, 0)


@dataclass
class TaskRecord:
    task: Task
    config: TaskConfig
    committee: dict[str, int]  # member → vote weight
    total_weight: int
    rounds: dict[int, RoundRecord]
    funded: list[Event]
    withdrawn: list[Event]
    signed_up: list[Event] = field(default_factory=list)
    deposit_refunds: list[Event] = field(default_factory=list)  # DepositRefunded
    forfeits: list[Event] = field(default_factory=list)  # DepositsForfeited
    #: every RewardClaimed of the task in log order (a claim pays every round it has not paid before)
    claims: list[Event] = field(default_factory=list)
    #: EscrowReleased of the whole task (round 0: `releaseUnclaimed` after the claim window)
    releases: list[Event] = field(default_factory=list)
    worker_escrow: int = 0
    validator_escrow: int = 0


def read_record(task: Task) -> TaskRecord:
    """Everything the audit needs from the chain: one log query, plus a few views."""
    events = task.all_events(task.from_block)
    current = task.current_round()
    rounds = {r: RoundRecord(r, task.round_info(r)) for r in range(1, current + 1)}
    for e in events:
        if e.name in ROUND_EVENTS and int(e["round"]) in rounds:
            rounds[int(e["round"])].events[e.name].append(e)
    return TaskRecord(
        task=task,
        config=task.config(),
        committee={to_checksum_address(m): int(w) for m, w in task.committee().items()},
        total_weight=task.total_weight(),
        rounds=rounds,
        funded=[e for e in events if e.name == "Funded"],
        withdrawn=[e for e in events if e.name == "Withdrawn"],
        signed_up=[e for e in events if e.name == "WorkerSignedUp"],
        deposit_refunds=[e for e in events if e.name == "DepositRefunded"],
        forfeits=[e for e in events if e.name == "DepositsForfeited"],
        claims=[e for e in events if e.name == "RewardClaimed"],
        releases=[e for e in events if e.name == "EscrowReleased" and int(e["round"]) == 0],
        worker_escrow=task.worker_escrow(),
        validator_escrow=task.validator_escrow(),
    )
