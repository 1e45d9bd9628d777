"""The worker agent: signs up to tasks, trains in every round, claims its rewards (paper 2.3.2–2.3.8)."""

from __future__ import annotations

from dataclasses import dataclass, field

from refiner.agents.base import Agent, chain_now
from refiner.agents.terms import Terms, refusal
from refiner.chain import Status, Task
from refiner.roles.participant import ProtocolError
from refiner.roles.worker import Worker


@dataclass
class WorkerAgent(Agent):
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
        joined = self.address in task.workers()
        return refusal(task.config(), self.terms, self.role.models, validator=False, joined=joined)

    def act(self, task: Task) -> bool:
        status = task.status()
        me = self.address
        signed_up = me in task.workers()
        open_seat = len(task.workers()) < task.config().max_workers
        if status is Status.RECRUITING and not signed_up and chain_now(task) <= task.deadline() and open_seat:
            self.role.sign_up(task)
            deposit = task.config().sign_up_deposit
            self.log.info(
                "task %s: signed up (deposit %d wei, back with round 1)", task.address[:10], deposit
            )
            signed_up = True
        if not signed_up:
            self.advance_if_due(task, status)
            return status is Status.TERMINATED or task.recruitment_closed()
        round_ = task.current_round()
        submitted = task.submission_of(round_, me)[0] > 0
        if status is Status.TRAINING and not submitted and chain_now(task) <= task.deadline():
            self.log.info(
                "task %s: training round %d on %d samples", task.address[:10], round_, len(self.role.data)
            )
            state = self.role.train(task)
            result = self.role.submit_training_results(task, state)
            self.log.info("task %s: submitted round %d (gas %d)", task.address[:10], round_, result.gas_used)
        self._claim(task, round_)
        self.advance_if_due(task, status)
        return status is Status.TERMINATED and self._all_settled(task, round_)

    def _claim(self, task: Task, current: int) -> None:
        settled = self.settled.setdefault(task.address, set())
        for round_ in range(1, current + 1):
            if round_ in settled:
                continue
            info = task.round_info(round_)
            if not info.finalized:
                continue
            samples, claimed = task.submission_of(round_, self.address)
            too_late = info.claim_deadline and chain_now(task) > info.claim_deadline
            if samples == 0 or claimed or info.consensus_key == bytes(32) or too_late:
                settled.add(round_)
                continue
            try:
                wei = self.role.claim_reward(task, round_)
            except ProtocolError as exc:  # the consensus details are not reachable yet
                self.log.info("task %s: cannot claim round %d yet: %s", task.address[:10], round_, exc)
                continue
            settled.add(round_)
            if wei:
                self.log.info("task %s: claimed %d wei for round %d", task.address[:10], wei, round_)
            else:
                self.log.info("task %s: nothing to claim for round %d (not paid)", task.address[:10], round_)

    def _all_settled(self, task: Task, current: int) -> bool:
        return set(range(1, current + 1)) <= self.settled.get(task.address, set())
