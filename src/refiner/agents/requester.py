"""The requester agent: drives its task from recruitment to the last round on its own (auto mode) and
keeps the latest consensus model (paper 2.3.2, 2.3.4, 2.3.8).

Between rounds it needs the previous round's consensus model, which it retrieves from the validators'
encrypted aggregates; everything else it reads from the chain, so it can be killed and restarted at any
time. If it dies for good, the round in flight still completes and pays (workers and validators need
nothing from it after `startRound`), and the task ends by itself after the idle deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from refiner.agents.base import Agent, paid
from refiner.chain import Status, Task
from refiner.fl.data import Dataset
from refiner.fl.models import State, initial_state, model_digest, resolve_model, serialize
from refiner.protocol import Role, Step
from refiner.roles.requester import Requester, shortfall
from refiner.wire.details import ProtocolError
from refiner.wire.reads import description_of


@dataclass
class RequesterAgent(Agent):
    plays: ClassVar[Role] = Role.REQUESTER
    requester: Requester | None = None
    validation: Dataset | None = None
    #: Where the latest consensus model is written (safetensors), if anywhere.
    out: Path | None = None
    #: Close recruitment early once this many workers signed up and this much committee weight is seated
    #: (0: wait for the recruitment deadline).
    min_workers: int = 0
    min_seats: int = 0
    seed: int = 0
    saved: set[str] = field(default_factory=set)

    @property
    def role(self) -> Requester:
        assert self.requester is not None
        return self.requester

    def prepare(self) -> None:
        pass

    def act(self, task: Task) -> bool:
        if task.requester() != self.address:
            return True  # not ours
        status = task.status()
        for step in self.due(task):
            if step.step is Step.OPEN_RECRUITMENT:
                self.role.open_recruitment(task)
                self.log.info("task %s: recruitment opened", task.address[:10])
            elif step.step is Step.CLOSE_RECRUITMENT:
                self._close_recruitment_when_recruited(task)
            elif step.step is Step.START_ROUND:
                self._start_round(task)
            elif step.step is Step.FINALIZE_ROUND:
                result = self.role.finalize_round(task)
                self.log.info(
                    "task %s: finalized round %d: %s",
                    task.address[:10],
                    step.round,
                    ", ".join(result.names()),
                )
            elif step.step is Step.ADVANCE:
                self.advance(task, status)
        if status is Status.TERMINATED:
            self._save(task)
            return True
        return False

    def _close_recruitment_when_recruited(self, task: Task) -> None:
        workers, seats = len(task.workers()), sum(task.committee().values())
        if self.min_workers and workers >= self.min_workers and seats >= max(1, self.min_seats):
            self.role.close_recruitment(task)
            self.log.info(
                "task %s: recruitment closed: %d workers (%s of deposits held), %d seats",
                task.address[:10],
                workers,
                paid(task.deposits_held()),
                seats,
            )

    def latest_model(self, task: Task) -> tuple[int, State]:
        """The newest consensus model (round, state); round 0 is the initial model."""
        round_ = task.last_consensus_round()
        if round_:
            return round_, self.role.retrieve_model(task, round_)
        return 0, initial_state(resolve_model(description_of(task).model, self.role.models), self.seed)

    def _start_round(self, task: Task) -> None:
        if self.validation is None:
            raise ProtocolError("the requester agent needs a validation set to start rounds")
        try:
            round_, state = self.latest_model(task)
        except ProtocolError as exc:
            self.log.warning("task %s: %s; waiting", task.address[:10], exc)
            return
        missing = shortfall(task)
        if missing:  # never take more than the budget without saying so
            self.log.warning(
                "task %s: the budget is %s short of the round's rewards: paying it from this account",
                task.address[:10],
                paid(missing),
            )
        result = self.role.start_round(task, state, self.validation)
        self.log.info(
            "task %s: started round %d from the model of round %d (gas %d)",
            task.address[:10],
            task.current_round(),
            round_,
            result.gas_used,
        )

    def _save(self, task: Task) -> None:
        if self.out is None or task.address in self.saved:
            return
        round_, state = self.latest_model(task)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(self.out.name + ".part")
        tmp.write_bytes(serialize(state))
        tmp.replace(self.out)
        self.saved.add(task.address)
        self.log.info(
            "task %s: model of round %d (digest %s) saved to %s",
            task.address[:10],
            round_,
            model_digest(state).hex()[:16],
            self.out,
        )
