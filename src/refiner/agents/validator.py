"""The validator agent: claims the committee seats sortition gives it, evaluates, commits, reveals,
settles rounds and claims its rewards (paper 2.3.3, 2.3.6–2.3.8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from refiner.agents.base import Agent, paid
from refiner.agents.terms import Terms, refusal
from refiner.chain import Status, Task
from refiner.fl.round_evaluation import epsilon_ppm
from refiner.protocol import Role, Step, chain_now
from refiner.reasons import result_reason
from refiner.roles.validator import (
    Evaluated,
    UpdatesPending,
    Validator,
    latest_block_time,
)
from refiner.units import from_fixed

#: First and longest wait (chain seconds) before fetching again updates that could not be fetched.
FIRST_RETRY, MAX_RETRY = 2, 60


@dataclass
class ValidatorAgent(Agent):
    plays: ClassVar[Role] = Role.VALIDATOR
    validator: Validator | None = None
    #: Stake to bond when registering (wei).
    stake: int = 0
    #: Work evaluated but not revealed yet, by (task, round): a cache; after a restart it is rebuilt from
    #: the commitment's memo and the store (`Validator.recover`).
    work: dict[tuple[str, int], Evaluated] = field(default_factory=dict)
    #: Tasks whose sortition this validator lost, and rounds settled (nothing more to claim).
    not_selected: set[str] = field(default_factory=set)
    settled: dict[str, set[int]] = field(default_factory=dict)
    #: The operator's terms: tasks outside them are not joined (no sortition, no seat).
    terms: Terms = field(default_factory=Terms)
    #: Evaluations waiting for updates that could not be fetched yet, by (task, round): when to try
    #: again (chain time) and the wait after that (doubling, at most MAX_RETRY, never past the cut-off).
    retry: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.validator is not None and self.validator.clock is latest_block_time:
            self.validator.clock = chain_now  # the clock the agents compare deadlines with

    @property
    def role(self) -> Validator:
        assert self.validator is not None
        return self.validator

    def prepare(self) -> None:
        if not self.registry.is_validator(self.address):
            self.role.register(self.stake)
            self.log.info("registered as a validator with a stake of %s", paid(self.stake))

    def refusal(self, task: Task) -> str | None:
        joined = self.address in task.committee()
        return refusal(
            task.config(),
            self.terms,
            self.role.models,
            validator=True,
            joined=joined,
            seat_lock=self.registry.max_seat_lock(),
        )

    def act(self, task: Task) -> bool:
        status = task.status()
        settled = self.settled.setdefault(task.address, set())
        for step in self.due(task, settled):
            if step.step is Step.FIX_SEED:
                # the seed epoch's block hash aged out unfixed: fixSeed moves the task to a later epoch
                task.fix_seed(self.account)
            elif step.step is Step.CLAIM_SEAT:
                self._sortition(task)
            elif step.step is Step.COMMIT_MANIFEST:
                self._evaluate_and_commit(task, step.round)
            elif step.step is Step.REVEAL_MANIFEST:
                self._reveal(task, step.round)
            elif step.step is Step.FINALIZE_ROUND:
                result = task.finalize_round(self.account)
                names = ", ".join(result.names())
                self.log.info("task %s: finalized round %d: %s", task.address[:10], step.round, names)
            elif step.step is Step.CLAIM_REWARD and self.claims_now(status):
                self._claim(task, step.round)
            elif step.step is Step.ADVANCE:
                self.advance(task, status)
        if self.address not in task.committee():
            return task.recruitment_closed() or status is Status.TERMINATED
        return status is Status.TERMINATED and not any(
            step.step is Step.CLAIM_REWARD for step in self.due(task, settled)
        )

    def _sortition(self, task: Task) -> None:
        if task.address in self.not_selected:
            return
        ticket = self.role.sortition(task)
        if ticket.seats == 0:
            self.not_selected.add(task.address)
            self.log.info(
                "task %s: not selected (stake %d of %d units)",
                task.address[:10],
                ticket.stake_units,
                ticket.total_units,
            )
            return
        task.claim_seat(self.account, ticket.proof, ticket.seats)
        self.log.info("task %s: claimed %d committee seat(s)", task.address[:10], ticket.seats)

    def _evaluate_and_commit(self, task: Task, round_: int) -> None:
        work = None
        if self.role.evaluates:
            key = (task.address, round_)
            due, wait = self.retry.get(key, (0, FIRST_RETRY))
            now = chain_now(task)
            if now < due:
                return  # some updates could not be fetched: not yet time to try them again
            self.log.info("task %s: evaluating round %d", task.address[:10], round_)
            try:
                work = self.role.evaluate(task)
            except UpdatesPending as pending:
                self.retry[key] = (min(now + wait, pending.cutoff), min(2 * wait, MAX_RETRY))
                self.log.info("task %s: %s", task.address[:10], pending)
                return
            self.retry.pop(key, None)
            self.work[(task.address, round_)] = work
            accepted = sum(1 for r in work.details.results if r["accepted"])
            self.log.info(
                "task %s: round %d: %d of %d updates qualified, aggregate accuracy %.4f",
                task.address[:10],
                round_,
                accepted,
                len(work.details.results),
                from_fixed(work.details.accuracy),
            )
            if work.evaluation is not None and work.evaluation.aggregate_rule != "fedavg":
                self.log.warning(
                    "task %s: round %d: FedAvg of the qualified updates was worse on the validation data "
                    "than the round's start and every update; adopted the %s instead",
                    task.address[:10],
                    round_,
                    work.evaluation.aggregate_rule,
                )
            eps = epsilon_ppm(task.config().epsilon)
            for r in work.details.results:
                if not r["accepted"] or int(r["contribution"]) <= 0:
                    self.log.info(
                        "task %s: round %d: worker %s %s",
                        task.address[:10],
                        round_,
                        r["worker"],
                        result_reason(r, eps),
                    )
        result = self.role.commit_manifest(task, work)
        self.log.info("task %s: committed round %d (gas %d)", task.address[:10], round_, result.gas_used)

    def _reveal(self, task: Task, round_: int) -> None:
        if not self.role.reveals:
            return
        work = self.work.get((task.address, round_)) or self.role.recover(task, round_)
        if work is None:
            self.log.warning(
                "task %s: cannot rebuild the manifest committed in round %d", task.address[:10], round_
            )
            return
        result = self.role.reveal_manifest(task, work)
        self.work.pop((task.address, round_), None)  # revealed: nothing needs it any more
        self.log.info(
            "task %s: revealed round %d (gas %s)",
            task.address[:10],
            round_,
            result.gas_used if result else "-",
        )

    def _claim(self, task: Task, round_: int) -> None:
        wei = self.role.claim_reward(task, round_)
        self.settled[task.address].add(round_)
        self.log.info("task %s: validator reward through round %d: %s", task.address[:10], round_, paid(wei))
