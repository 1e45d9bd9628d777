"""The worker agent: signs up to tasks, trains in every round, claims its rewards (paper 2.3.2–2.3.8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from refiner.agents.base import Agent, paid
from refiner.agents.terms import Terms, refusal
from refiner.chain import Status, Task
from refiner.fl.round_evaluation import epsilon_ppm
from refiner.protocol import Role, Step
from refiner.reasons import result_reason
from refiner.roles.worker import Worker
from refiner.wire.details import ProtocolError
from refiner.wire.reads import consensus_details


@dataclass
class WorkerAgent(Agent):
    plays: ClassVar[Role] = Role.WORKER
    worker: Worker | None = None
    #: Rounds (per task) this worker has nothing more to claim in: rebuilt from the chain after a restart.
    settled: dict[str, set[int]] = field(default_factory=dict)
    #: The operator's terms: tasks outside them are not joined.
    terms: Terms = field(default_factory=Terms)

    @property
    def role(self) -> Worker:
        assert self.worker is not None
        return self.worker

    def prepare(self) -> None:
        if not self.registry.is_worker(self.address):
            self.role.register()
            self.log.info("registered as a worker")

    def refusal(self, task: Task) -> str | None:
        joined = task.signed_up(self.address)
        return refusal(task.config(), self.terms, self.role.models, validator=False, joined=joined)

    def act(self, task: Task) -> bool:
        status = task.status()
        settled = self.settled.setdefault(task.address, set())
        unsettled = False
        steps = self.due(task, settled)
        for step in steps:
            if step.step is Step.SIGN_UP:
                self.role.sign_up(task)
                deposit = paid(task.config().sign_up_deposit)
                self.log.info(
                    "task %s: signed up (deposit %s, back with round 1)", task.address[:10], deposit
                )
            elif step.step is Step.SUBMIT_TRAINING_RESULTS:
                self._train_and_submit(task, step.round)
            elif step.step is Step.ADVANCE:
                self.advance(task, status)
        # a leaf carries the worker's earnings through its round: the latest round's claim pays them all
        claims = sorted((s.round for s in steps if s.step is Step.CLAIM_REWARD), reverse=True)
        if claims and self.claims_now(status):
            if self._claim(task, claims[0]):
                settled.update(claims[1:])
            else:
                unsettled = True
        elif claims:
            unsettled = True
        if not task.signed_up(self.address):
            return status is Status.TERMINATED or task.recruitment_closed()
        return status is Status.TERMINATED and not unsettled

    def _train_and_submit(self, task: Task, round_: int) -> None:
        self.log.info(
            "task %s: training round %d on %d samples", task.address[:10], round_, len(self.role.data)
        )
        state = self.role.train(task)
        result = self.role.submit_training_results(task, state)
        self.log.info("task %s: submitted round %d (gas %d)", task.address[:10], round_, result.gas_used)

    def _claim(self, task: Task, round_: int) -> bool:
        """Claim what this worker earned through `round_` and was not paid yet; False when it cannot
        be claimed yet."""
        try:
            wei = self.role.claim_reward(task, round_)
        except ProtocolError as exc:  # the consensus details are not reachable yet
            self.log.info("task %s: cannot claim round %d yet: %s", task.address[:10], round_, exc)
            return False
        self.settled[task.address].add(round_)
        if wei:
            self.log.info("task %s: claimed %s through round %d", task.address[:10], paid(wei), round_)
        else:
            why = self._unpaid(task, round_)
            self.log.info("task %s: nothing to claim for round %d: %s", task.address[:10], round_, why)
        return True

    def _unpaid(self, task: Task, round_: int) -> str:
        """Why the consensus manifest of `round_` pays this worker nothing, in words."""
        _, details = consensus_details(self.role.store, task, round_)
        mine = [r for r in details.results if str(r["worker"]).lower() == self.address.lower()]
        if not mine:
            return "its update is not in the consensus manifest (not submitted in time?)"
        reason = result_reason(mine[0], epsilon_ppm(task.config().epsilon))
        return "claimed already" if reason.startswith("paid") else reason
