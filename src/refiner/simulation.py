"""Run a whole Refiner task in one process: every participant is a role object with its own key, all on
one chain and one store (auto mode; the demo and the end-to-end tests use it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from refiner.cast import build_cast
from refiner.chain import Chain, Durations, Registry, Task, TaskConfig, TxResult, public_key_bytes
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate
from refiner.fl.models import ModelFn, State, initial_state, model_digest, resolve_model
from refiner.fl.round_evaluation import epsilon_ppm
from refiner.fl.training import TrainingConfig, train_local
from refiner.parallel import Executor, Sequential
from refiner.protocol import Role, Step, due, has_deadline, why_not
from refiner.reasons import result_reason
from refiner.roles import (
    Requester,
    Validator,
    ValidatorBehaviour,
    Worker,
    WorkerBehaviour,
)
from refiner.roles.validator import Evaluated, EvaluationJob, UpdatesPending, run_evaluation
from refiner.storage import Store
from refiner.units import ETH, from_fixed
from refiner.wire.details import ProtocolError
from refiner.wire.reads import consensus_details, description_of
from refiner.wire.spec import DEFAULT_CONTRIBUTION, Contribution, TaskDescription

T = TypeVar("T")

#: Called with (step, done, total) while a round runs, for progress bars.
Progress = Callable[[str, int, int], None]


def _quiet(step: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class RoundReport:
    round: int
    accuracy: float  # test accuracy of the round's global model
    validation_loss: float
    validation_accuracy: float
    accepted: list[str]
    rejected: list[str]
    contributions: dict[str, int]  # ppm, from the consensus manifest
    worker_rewards_wei: dict[str, int]
    validator_rewards_wei: dict[str, int]
    gas_used: int
    seconds: float
    consensus: bool
    #: why each worker of the consensus manifest was rejected, or accepted and paid (nothing), in words
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class Simulation:
    """A deployed task with its participants."""

    chain: Chain
    store: Store
    registry: Registry
    requester: Requester
    workers: list[Worker]
    validators: list[Validator]
    task: Task
    model_fn: ModelFn
    global_state: State
    reports: list[RoundReport] = field(default_factory=list)
    earned: dict[str, int] = field(default_factory=dict)
    #: Where workers' training and validators' evaluations run (`refiner.parallel`); the chain, the
    #: store and every transaction stay in this process, in the same order as with the default.
    executor: Executor = field(default_factory=Sequential)
    _ahead: set[tuple[int, Step]] = field(default_factory=set, init=False, repr=False)

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        store: Store,
        shards: Sequence[Dataset],
        behaviours: Sequence[WorkerBehaviour],
        validator_behaviours: Sequence[ValidatorBehaviour],
        *,
        config: TaskConfig,
        model: str = "small_cnn",
        models: Mapping[str, ModelFn] | None = None,
        lr: float = 0.1,
        epochs: int = 1,
        contribution: Contribution = DEFAULT_CONTRIBUTION,
        stakes: Sequence[int] | None = None,
        stake_unit: int = ETH // 10,
        seed: int = 0,
        label: str = "sim",
    ) -> Simulation:
        """Fund and register everyone, create the task, sign up all workers; every validator draws its
        sortition and the winners claim their seats (`config.committee_size` is τ, the expected number
        of seats). `stakes` defaults to 1 ETH each; `models` are everyone's custom models (by name)."""
        models = dict(models or {})
        stakes = list(stakes) if stakes is not None else [ETH] * len(validator_behaviours)
        cast = build_cast(
            chain,
            store,
            shards,
            stakes,
            label=label,
            worker_behaviours=behaviours,
            validator_behaviours=validator_behaviours,
            stake_unit=stake_unit,
            models=models,
            seed=seed,
        )
        requester, workers, validators, registry = (
            cast.requester,
            cast.workers,
            cast.validators,
            cast.registry,
        )
        description = TaskDescription(
            public_key_bytes(requester.account).hex(),
            model=model,
            lr=lr,
            epochs=epochs,
            contribution=contribution,
        )
        task = requester.create_task(config, description)
        requester.open_recruitment(task)
        for w in workers:
            w.sign_up(task)
        for v in validators:
            v.claim_seat(task)
        requester.close_recruitment(task)
        model_fn = resolve_model(description.model, models)
        return cls(
            chain,
            store,
            registry,
            requester,
            workers,
            validators,
            task,
            model_fn,
            initial_state(model_fn, seed),
        )

    @property
    def committee(self) -> list[Validator]:
        """The validators that won seats, in seat order."""
        seated = self.task.committee()
        return [v for v in self.validators if v.address in seated]

    def run_round(self, validation: Dataset, test: Dataset, progress: Progress = _quiet) -> RoundReport:
        """One whole round in auto mode: every participant takes the steps due for it
        (`refiner.protocol.due`) until the round is settled and claimed. When nobody has anything left
        to do before a deadline (a validator did not reveal, say), the clock jumps past it."""
        t0, gas0 = time.perf_counter(), self.chain.gas_used
        task = self.task
        committee = self.committee
        round_ = task.current_round() + 1
        cast: list[tuple[Requester | Worker | Validator, Role]] = [(self.requester, Role.REQUESTER)]
        cast += [(w, Role.WORKER) for w in self.workers]
        # who does not evaluate commits last: it copies a commitment made before its own
        cast += [(v, Role.VALIDATOR) for v in sorted(committee, key=lambda v: not v.evaluates)]
        work: dict[str, Evaluated] = {}
        taken: set[tuple[str, Step]] = set()
        worker_rewards = dict.fromkeys((w.address for w in self.workers), 0)
        validator_rewards = dict.fromkeys((v.address for v in committee), 0)
        steps, done = len(self.workers) + 2 * len(committee), 0
        finalized: TxResult | None = None
        while True:
            acted = False
            for participant, role in cast:
                settled = range(1, round_)  # earlier rounds were claimed when they were settled
                for step in due(task, participant.address, role, settled=settled):
                    if step.optional or (participant.address, step.step) in taken:
                        continue
                    if step.step is Step.START_ROUND and step.round == round_:
                        continue  # the next round is the next call's
                    if step.step is Step.ADVANCE and finalized is not None:
                        continue
                    if step.step is not Step.ADVANCE:  # each passes another phase's deadline
                        taken.add((participant.address, step.step))
                    acted = True
                    if step.step in _PROGRESS:
                        progress(f"round {round_}: {_PROGRESS[step.step](participant)}", done, steps)
                        done += 1
                    result = self._take(step.step, participant, round_, validation, work)
                    if step.step is Step.FINALIZE_ROUND:
                        finalized = result
                    elif step.step is Step.CLAIM_REWARD:
                        rewards = worker_rewards if role is Role.WORKER else validator_rewards
                        rewards[participant.address] = int(result)
            if acted:
                continue
            if finalized is not None:
                break
            status = task.status()
            if not has_deadline(task, status):
                reason = why_not(task, self.requester.address, Role.REQUESTER, Step.START_ROUND)
                raise ProtocolError(f"round {round_} cannot run: {reason.reason if reason else status.name}")
            self.chain.increase_time(task.deadline() - self.chain.now() + 1)
        consensus = "RoundFinalized" in finalized.names()
        for who, wei in {**worker_rewards, **validator_rewards}.items():
            self.earned[who] = self.earned.get(who, 0) + wei
        accepted: list[str] = []
        rejected: list[str] = []
        contributions: dict[str, int] = {}
        reasons: dict[str, str] = {}
        val_loss = val_acc = float("nan")
        if consensus:
            _, details = consensus_details(self.store, task, round_)
            eps = epsilon_ppm(task.config().epsilon)
            for r in details.results:
                (accepted if r["accepted"] else rejected).append(r["worker"])
                contributions[r["worker"]] = r["contribution"]
                reasons[r["worker"]] = result_reason(r, eps)
            val_loss, val_acc = from_fixed(details.loss), from_fixed(details.accuracy)
            self.global_state = self.requester.retrieve_model(task, round_)
        progress(f"round {round_}: done", steps, steps)
        report = RoundReport(
            round=round_,
            accuracy=evaluate(self.model_fn, self.global_state, test).accuracy,
            validation_loss=val_loss,
            validation_accuracy=val_acc,
            accepted=accepted,
            rejected=rejected,
            contributions=contributions,
            reasons=reasons,
            worker_rewards_wei=worker_rewards,
            validator_rewards_wei=validator_rewards,
            gas_used=self.chain.gas_used - gas0,
            seconds=time.perf_counter() - t0,
            consensus=consensus,
        )
        self.reports.append(report)
        return report

    def _take(
        self,
        step: Step,
        participant: Requester | Worker | Validator,
        round_: int,
        validation: Dataset,
        work: dict[str, Evaluated],
    ) -> Any:
        """Take `step` as `participant`; returns what the step returns (a claim: the wei received)."""
        task = self.task
        if self.executor.parallelism > 1 and (round_, step) not in self._ahead:
            if step is Step.SUBMIT_TRAINING_RESULTS:
                self._ahead.add((round_, step))
                self._train_ahead()
            elif step is Step.COMMIT_MANIFEST:
                self._ahead.add((round_, step))
                self._evaluate_ahead()
        if isinstance(participant, Requester):
            if step is Step.START_ROUND:
                return participant.start_round(task, self.global_state, validation)
            if step is Step.FINALIZE_ROUND:
                return participant.finalize_round(task)
        elif isinstance(participant, Worker):
            if step is Step.SUBMIT_TRAINING_RESULTS:
                return participant.submit_training_results(task, participant.train(task))
            if step is Step.CLAIM_REWARD:
                return participant.claim_reward(task, round_)
        else:
            if step is Step.COMMIT_MANIFEST:
                if participant.evaluates:
                    work[participant.address] = self.evaluate(participant)
                return participant.commit_manifest(task, work.get(participant.address))
            if step is Step.REVEAL_MANIFEST:
                return participant.reveal_manifest(task, work.get(participant.address))
            if step is Step.FINALIZE_ROUND:
                return task.finalize_round(participant.account)
            if step is Step.CLAIM_REWARD:
                return participant.claim_reward(task, round_)
        if step is Step.ADVANCE:
            return task.advance(participant.account)
        raise ProtocolError(f"the simulation cannot take step {step.value} as a {type(participant).__name__}")

    def _train_ahead(self) -> None:
        """Train every worker that is yet to submit this round at once, on the executor; each keeps its
        model for its own `train` (which still fetches the global model and applies its behaviour)."""
        task = self.task
        submitted = {e["worker"] for e in task.round_events("TrainingResultsSubmitted", task.current_round())}
        jobs: list[tuple[Any, ...]] = []
        owners: list[tuple[Worker, TrainingConfig]] = []
        global_state: Any = None
        model = description_of(task).model
        for w in self.workers:
            data = None if w.address in submitted else w.training_data(task)
            if data is None:
                continue
            if global_state is None:
                global_state = self.executor.share(w.global_model(task))
            config = w.training_config(task)
            jobs.append((resolve_model(model, w.models), global_state, data, config))
            owners.append((w, config))
        for (w, config), state in zip(owners, self.executor.map(train_local, jobs), strict=True):
            w.pretrained(task, config, state)

    def _evaluate_ahead(self) -> None:
        """Evaluate the round for every committee member that evaluates, at once, on the executor. Each
        member fetches and opens its own copies in this process; copies with equal weights (the same
        update, as every honest member sees it) are kept and travel once: the others are dropped as soon
        as they are read, so that memory does not grow with the committee."""
        task = self.task
        members = [v for v in self.committee if v.evaluates and v.evaluates_updates]
        shared: dict[bytes, Any] = {}

        def once(key: bytes, value: Any) -> Any:
            if key not in shared:
                shared[key] = self.executor.share(value)
            return shared[key]

        def by_reference(state: State) -> Any:
            return once(model_digest(state), state)

        owned: list[tuple[Validator, EvaluationJob]] = []
        jobs: list[tuple[Any, ...]] = []
        for v in members:
            job = self._past_pending_updates(partial(v.evaluation_job, task))
            shared_job = replace(
                job,
                global_state=by_reference(job.global_state),
                updates=[(w, by_reference(state), n) for w, state, n in job.updates],
                validation=once(model_digest({"x": job.validation.x, "y": job.validation.y}), job.validation),
                previous_state=None if job.previous_state is None else by_reference(job.previous_state),
            )
            jobs.append(shared_job.arguments())
            owned.append((v, replace(job, updates=[], previous_state=None)))
        results = self.executor.map(run_evaluation, jobs) if jobs else []
        for (v, job), evaluation in zip(owned, results, strict=True):
            v.evaluated_ahead(task, job, evaluation)

    def evaluate(self, validator: Validator) -> Evaluated:
        """Evaluate as `validator` (see `_past_pending_updates`)."""
        return self._past_pending_updates(lambda: validator.evaluate(self.task))

    def _past_pending_updates(self, fetch: Callable[[], T]) -> T:
        """`fetch()`; updates it cannot fetch are waited for until the committee's fetch cut-off: in one
        process nobody uploads anything meanwhile, so the chain's clock jumps there."""
        try:
            return fetch()
        except UpdatesPending as pending:
            self.chain.increase_time(pending.cutoff - self.chain.now())
            return fetch()


#: What the progress bar says while a participant takes a long step.
_PROGRESS: dict[Step, Callable[[Any], str]] = {
    Step.SUBMIT_TRAINING_RESULTS: lambda w: f"worker {w.address[:8]} trains ({w.behaviour.value})",
    Step.COMMIT_MANIFEST: lambda v: f"validator {v.address[:8]} evaluates",
    Step.REVEAL_MANIFEST: lambda v: f"validator {v.address[:8]} reveals",
}


def default_durations() -> Durations:
    """Phase durations for a simulation: long enough that nobody misses a deadline by accident."""
    return Durations(
        recruitment=3600, training=3600, evaluation=3600, reveal=3600, idle=86400, claim=30 * 86400
    )
