"""What is due: the steps a participant may take on a task now, and why a step is not due.

The one place that knows the protocol's order (contracts/RefinerTask.sol enforces it): the agents act on
`due`, the simulation loops on it until a round is settled, and the web services refuse a step with
`why_not`'s reason. Each rule reads the chain lazily (a :class:`Look` reads each value at most once), so
asking costs only the reads the participant's phase needs.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from refiner.chain import RoundInfo, Status, Task
from refiner.protocol.phases import has_deadline

#: After this many blocks the seed block's hash is gone: `fixSeed` moves recruitment to a later epoch.
BLOCKHASH_WINDOW = 256


class Role(StrEnum):
    REQUESTER = "requester"
    WORKER = "worker"
    VALIDATOR = "validator"


class Step(StrEnum):
    """The protocol's steps, named as the contract's functions are."""

    OPEN_RECRUITMENT = "open_recruitment"
    SIGN_UP = "sign_up"
    FIX_SEED = "fix_seed"
    CLAIM_SEAT = "claim_seat"
    CLOSE_RECRUITMENT = "close_recruitment"
    START_ROUND = "start_round"
    STOP_TRAINING = "stop_training"
    SUBMIT_TRAINING_RESULTS = "submit_training_results"
    #: The validator evaluates the round's updates first (off chain), then commits.
    COMMIT_MANIFEST = "commit_manifest"
    REVEAL_MANIFEST = "reveal_manifest"
    FINALIZE_ROUND = "finalize_round"
    #: A worker's `claimReward`, a validator's `claimValidatorReward`.
    CLAIM_REWARD = "claim_reward"
    ADVANCE = "advance"


#: Steps a participant takes when it chooses to (the protocol does not wait for them).
OPTIONAL = frozenset({Step.CLOSE_RECRUITMENT, Step.STOP_TRAINING})

#: Steps the contract lets any account take.
ANYONE = frozenset({Step.FINALIZE_ROUND, Step.ADVANCE})

#: Each role's steps in the order they fall due (claims and `advance` come last in every phase).
STEPS: dict[Role, tuple[Step, ...]] = {
    Role.REQUESTER: (
        Step.OPEN_RECRUITMENT,
        Step.CLOSE_RECRUITMENT,
        Step.START_ROUND,
        Step.STOP_TRAINING,
        Step.FINALIZE_ROUND,
        Step.ADVANCE,
    ),
    Role.WORKER: (Step.SIGN_UP, Step.SUBMIT_TRAINING_RESULTS, Step.CLAIM_REWARD, Step.ADVANCE),
    Role.VALIDATOR: (
        Step.FIX_SEED,
        Step.CLAIM_SEAT,
        Step.COMMIT_MANIFEST,
        Step.REVEAL_MANIFEST,
        Step.FINALIZE_ROUND,
        Step.CLAIM_REWARD,
        Step.ADVANCE,
    ),
}


@dataclass(frozen=True)
class Due:
    step: Step
    #: The round the step belongs to (a claim names a past round; 0 before the first round).
    round: int

    @property
    def optional(self) -> bool:
        return self.step in OPTIONAL


@dataclass(frozen=True)
class NotDue:
    """Why a step is not due. `standing`: the account may never take it on this task (it is not the
    requester, not signed up, not on the committee); otherwise it is a matter of time or was done."""

    reason: str
    standing: bool = False


def chain_now(task: Task) -> int:
    """Seconds since the epoch as the next block will see them: the wall clock on a node (whose latest
    block may be several seconds old), the latest block's time on a chain whose clock only moves when
    told (the embedded one, anvil in tests)."""
    latest = task.chain.now()
    return latest if task.chain.manual_clock else max(latest, int(time.time()))


class Look:
    """What the rules read of one task for one account, each value read from the chain at most once."""

    def __init__(self, task: Task, account: str, role: Role, now: int | None = None) -> None:
        self.task, self.account, self.role = task, account, role
        self._now = now

    @cached_property
    def now(self) -> int:
        return chain_now(self.task) if self._now is None else self._now

    @cached_property
    def status(self) -> Status:
        return self.task.status()

    @cached_property
    def round(self) -> int:
        return self.task.current_round()

    @cached_property
    def deadline(self) -> int:
        return self.task.deadline()

    @cached_property
    def is_requester(self) -> bool:
        return self.task.requester() == self.account

    @cached_property
    def workers(self) -> list[str]:
        return self.task.workers()

    @cached_property
    def committee(self) -> dict[str, int]:
        return self.task.committee()

    @cached_property
    def seated(self) -> bool:
        return self.account in self.committee

    @cached_property
    def ballot(self) -> bytes:
        return self.task.ballot_of(self.round, self.account)

    @property
    def past_deadline(self) -> bool:
        return self.now > self.deadline

    def round_info(self, round_: int) -> RoundInfo:
        return self.task.round_info(round_)


def due(
    task: Task,
    account: str,
    role: Role,
    *,
    now: int | None = None,
    settled: Collection[int] = (),
) -> list[Due]:
    """The steps `account`, playing `role`, may take on `task` now, in the order to take them; claims
    skip the rounds in `settled` (rounds the caller knows it has nothing more to claim in)."""
    look = Look(task, account, role, now)
    steps: list[Due] = []
    for step in STEPS[role]:
        if step is Step.CLAIM_REWARD:
            rounds = (r for r in range(1, look.round + 1) if r not in settled)
            steps += [Due(step, r) for r in rounds if _claim(look, r) is None]
        elif _RULES[step](look) is None and _waits(look, step):
            steps.append(Due(step, look.round))
    return steps


def why_not(
    task: Task, account: str, role: Role, step: Step, *, round_: int | None = None, now: int | None = None
) -> NotDue | None:
    """Why `account`, playing `role`, may not take `step` now (None: it may); a claim names its round."""
    look = Look(task, account, role, now)
    if step not in STEPS[role] and step not in ANYONE:
        return NotDue(f"a {role.value} does not {step.value.replace('_', ' ')}", standing=True)
    if step is Step.CLAIM_REWARD:
        return _claim(look, look.round if round_ is None else round_)
    return _RULES[step](look)


# ---------------------------------------------------------------------------------------------- rules


def _in(look: Look, status: Status, what: str) -> NotDue | None:
    if look.status is not status:
        return NotDue(f"{what} while {status.name}; the task is {look.status.name}")
    return None


def _waits(look: Look, step: Step) -> bool:
    """Whether `due` lists a step anybody may take for this account: `finalizeRound` for the task's
    requester and its committee (the ones waiting for it), `advance` for everyone."""
    if step is not Step.FINALIZE_ROUND:
        return True
    return look.is_requester if look.role is Role.REQUESTER else look.seated


def _before_deadline(look: Look, phase: str) -> NotDue | None:
    return NotDue(f"the {phase} deadline has passed") if look.past_deadline else None


def _requester(look: Look) -> NotDue | None:
    return None if look.is_requester else NotDue("only the task's requester takes this step", standing=True)


def _open_recruitment(look: Look) -> NotDue | None:
    if refused := _requester(look):
        return refused
    if look.status is not Status.PENDING or look.task.recruitment_opened():
        return NotDue("recruitment was opened already")
    return None


def _close_recruitment(look: Look) -> NotDue | None:
    return _requester(look) or _in(look, Status.RECRUITING, "recruitment is closed")


def _start_round(look: Look) -> NotDue | None:
    if refused := _requester(look):
        return refused
    if look.status is not Status.PENDING:
        return NotDue(f"a round can start only while PENDING, not {look.status.name}")
    if not look.task.recruitment_closed():
        return NotDue("a round can start only after recruitment closed")
    return None


def _stop_training(look: Look) -> NotDue | None:
    return _requester(look) or _in(look, Status.PENDING, "training is stopped between rounds")


def _sign_up(look: Look) -> NotDue | None:
    if refused := _in(look, Status.RECRUITING, "workers sign up"):
        return refused
    if look.task.signed_up(look.account):
        return NotDue("already signed up to this task")
    if refused := _before_deadline(look, "recruitment"):
        return refused
    if len(look.workers) >= look.task.config().max_workers:
        return NotDue(f"the task has all the workers it takes ({len(look.workers)})")
    return None


def _seed_aged_out(look: Look) -> bool:
    seed_block = look.task.seed_block()
    return look.task.chain.w3.eth.block_number - seed_block >= BLOCKHASH_WINDOW


def _fix_seed(look: Look) -> NotDue | None:
    if refused := _in(look, Status.RECRUITING, "the sortition seed is fixed"):
        return refused
    if look.seated or look.task.sortition_seed() is not None or not _seed_aged_out(look):
        return NotDue("the sortition seed needs no fixing")
    return None


def _claim_seat(look: Look) -> NotDue | None:
    if refused := _in(look, Status.RECRUITING, "seats are drawn"):
        return refused
    if look.seated:
        return NotDue(f"already holds {look.committee[look.account]} seat(s) on this task's committee")
    if refused := _before_deadline(look, "recruitment"):
        return refused
    if look.task.sortition_seed() is None:
        return NotDue("the sortition seed block has not been mined yet; try again in a moment")
    return None


def _submit_training_results(look: Look) -> NotDue | None:
    if look.account not in look.workers:
        return NotDue("has not signed up to this task", standing=True)
    if refused := _in(look, Status.TRAINING, "training results are submitted"):
        return refused
    if look.task.submitted(look.round, look.account):
        return NotDue(f"already submitted in round {look.round}")
    return _before_deadline(look, "training")


def _member(look: Look) -> NotDue | None:
    return None if look.seated else NotDue("is not on this task's committee", standing=True)


def _commit_manifest(look: Look) -> NotDue | None:
    if refused := _member(look) or _in(look, Status.EVALUATING, "manifests are committed"):
        return refused
    if look.ballot != bytes(32):
        return NotDue(f"already committed its manifest for round {look.round}")
    return _before_deadline(look, "evaluation")


def _reveal_manifest(look: Look) -> NotDue | None:
    if refused := _member(look) or _in(look, Status.REVEALING, "manifests are revealed"):
        return refused
    if look.ballot == bytes(32):
        return NotDue(f"did not commit a manifest in round {look.round}: nothing to reveal")
    if not look.ballot[0] & 0x80:  # a commitment keeps its top bit set until revealed (TaskTypes.COMMITTED)
        return NotDue(f"already revealed its manifest for round {look.round}")
    return _before_deadline(look, "reveal")


def _finalize_round(look: Look) -> NotDue | None:
    return _in(look, Status.REWARDING, "a round is finalized")


def _advance(look: Look) -> NotDue | None:
    if not has_deadline(look.task, look.status):
        return NotDue(f"the task is {look.status.name}: it has no deadline to pass")
    if not look.past_deadline:
        return NotDue(f"the {look.status.name} deadline has not passed yet")
    return None


def _claim(look: Look, round_: int) -> NotDue | None:
    if round_ < 1 or round_ > look.round:
        return NotDue(f"the task has no round {round_} yet (it is in round {look.round})")
    if look.role is Role.VALIDATOR and (refused := _member(look)):
        return refused
    info = look.round_info(round_)
    if not info.finalized:
        return NotDue(f"round {round_} is not settled yet: finalize it first")
    closes = look.task.claim_deadline()
    if closes and look.now > closes:
        return NotDue("the task's claim window has closed", standing=True)
    if look.role is Role.VALIDATOR:  # one claim pays every finalized round: it is due with the latest
        settled = look.round if look.status in (Status.PENDING, Status.TERMINATED) else look.round - 1
        if round_ < settled:
            return NotDue(f"round {round_}'s reward is claimed with round {settled}'s (rewards accrue)")
        if not look.task.validator_reward_of(look.account):
            return NotDue(f"has no validator reward to claim through round {round_}")
        return None
    if not info.consensus:
        return NotDue(f"round {round_} ended without consensus, so nobody is paid for it")
    if not look.task.submitted(round_, look.account):
        return NotDue(f"submitted no update in round {round_}", standing=True)
    last, _ = look.task.worker_claims(look.account)
    if round_ <= last:
        return NotDue(f"already claimed its rewards through round {last}")
    return None


_RULES = {
    Step.OPEN_RECRUITMENT: _open_recruitment,
    Step.CLOSE_RECRUITMENT: _close_recruitment,
    Step.START_ROUND: _start_round,
    Step.STOP_TRAINING: _stop_training,
    Step.SIGN_UP: _sign_up,
    Step.FIX_SEED: _fix_seed,
    Step.CLAIM_SEAT: _claim_seat,
    Step.SUBMIT_TRAINING_RESULTS: _submit_training_results,
    Step.COMMIT_MANIFEST: _commit_manifest,
    Step.REVEAL_MANIFEST: _reveal_manifest,
    Step.FINALIZE_ROUND: _finalize_round,
    Step.ADVANCE: _advance,
}
