"""What an audit finds: named checks, a verdict per round, and the task-level result."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from refiner.chain.types import Status
from refiner.storage import IntegrityError, NotFound


class AuditError(RuntimeError):
    """The audit cannot run at all (unknown task, rounds out of range, a key that is not the requester's)."""


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCOMPLETE = "INCOMPLETE"
    IN_PROGRESS = "IN PROGRESS"


@dataclass(frozen=True)
class Check:
    """One named check. `ok` is None when it could not be done (`detail` says why)."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class RoundAudit:
    round: int
    verdict: Verdict
    checks: list[Check]

    def check(self, name: str) -> Check:
        """The check called `name`; KeyError if this round has none."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"round {self.round} has no {name!r} check")


@dataclass(frozen=True)
class TaskAudit:
    task: str
    status: Status
    rounds: list[RoundAudit]
    #: Task-wide checks (the Ether ledger), independent of any one round.
    checks: list[Check] = field(default_factory=list)
    #: Whether the requester's key was given (so the evaluation could be re-run).
    with_requester: bool = False  # both keys given: the requester's and a committee member's

    def round(self, number: int) -> RoundAudit:
        for r in self.rounds:
            if r.round == number:
                return r
        raise KeyError(f"round {number} was not audited")


def verdict_of(checks: list[Check], *, finalized: bool = True) -> Verdict:
    """FAIL if any check failed; otherwise IN PROGRESS for an unfinalized round, INCOMPLETE if some check
    could not be done, PASS if all passed."""
    if any(c.ok is False for c in checks):
        return Verdict.FAIL
    if not finalized:
        return Verdict.IN_PROGRESS
    if any(c.ok is None for c in checks):
        return Verdict.INCOMPLETE
    return Verdict.PASS


def exit_code(audit: TaskAudit) -> int:
    """0 if nothing failed (PASS, INCOMPLETE or IN PROGRESS everywhere), 1 if any check failed."""
    failed = any(r.verdict is Verdict.FAIL for r in audit.rounds) or any(c.ok is False for c in audit.checks)
    return 1 if failed else 0


def short(address: str) -> str:
    """0x1234…abcd: enough to tell participants apart in a one-line detail."""
    return f"{address[:6]}…{address[-4:]}"


def eth(wei: int) -> str:
    """An exact amount (no float rounding: an audit compares wei): in wei below a gwei, else in ETH."""
    if 0 < abs(wei) < 10**9:
        return f"{wei} wei"
    return f"{Decimal(wei).scaleb(-18).normalize():f} ETH"


def unavailable(exc: Exception) -> str:
    """Why a stored object could not be read, in a few words (the store's messages name whole paths)."""
    if isinstance(exc, NotFound):
        return "not in the store"
    if isinstance(exc, IntegrityError):
        return "the store's copy is corrupt (its bytes do not match the handle)"
    return str(exc)
