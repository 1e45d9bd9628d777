"""Run a whole Refiner task in one process: every participant is a role object with its own key, all on
one chain and one store (auto mode; the demo and the end-to-end tests use it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from refiner.cast import build_cast
from refiner.chain import Chain, Durations, Registry, Task, TaskConfig, public_key_bytes
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate
from refiner.fl.models import ModelFn, State, initial_state, resolve_model
from refiner.fl.round_evaluation import epsilon_ppm
from refiner.reasons import result_reason
from refiner.roles import (
    Requester,
    Validator,
    ValidatorBehaviour,
    Worker,
    WorkerBehaviour,
)
from refiner.roles.spec import DEFAULT_CONTRIBUTION, Contribution, TaskDescription
from refiner.roles.validator import Evaluated, UpdatesPending
from refiner.storage import Store
from refiner.units import ETH, from_fixed

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
        """One whole round in auto mode: start, train, evaluate, commit, reveal, finalize, claim, retrieve."""
        t0, gas0 = time.perf_counter(), self.chain.gas_used
        task = self.task
        committee = self.committee
        self.requester.start_round(task, self.global_state, validation)
        round_ = task.current_round()
        steps = len(self.workers) + 2 * len(committee)
        done = 0
        for w in self.workers:
            progress(f"round {round_}: worker {w.address[:8]} trains ({w.behaviour.value})", done, steps)
            w.submit_training_results(task, w.train(task))
            done += 1
        work = {}
        for v in committee:
            progress(f"round {round_}: validator {v.address[:8]} evaluates", done, steps)
            if v.evaluates:
                work[v.address] = self.evaluate(v)
            done += 1
        # who does not evaluate commits last: it copies a commitment made before its own
        for v in sorted(committee, key=lambda v: not v.evaluates):
            v.commit_manifest(task, work.get(v.address))
        for v in committee:
            progress(f"round {round_}: validator {v.address[:8]} reveals", done, steps)
            v.reveal_manifest(task, work.get(v.address))
            done += 1
        if task.status().name == "REVEALING":  # someone did not reveal: wait out the deadline
            self.chain.increase_time(task.config().durations.reveal + 1)
            task.advance(self.requester.account)
        fin = self.requester.finalize_round(task)
        consensus = "RoundFinalized" in fin.names()
        worker_rewards = {w.address: w.claim_reward(task, round_) if consensus else 0 for w in self.workers}
        validator_rewards = {v.address: v.claim_reward(task, round_) if consensus else 0 for v in committee}
        for who, wei in {**worker_rewards, **validator_rewards}.items():
            self.earned[who] = self.earned.get(who, 0) + wei
        accepted: list[str] = []
        rejected: list[str] = []
        contributions: dict[str, int] = {}
        reasons: dict[str, str] = {}
        val_loss = val_acc = float("nan")
        if consensus:
            from refiner.roles.participant import consensus_details

            _, details = consensus_details(self.requester, task, round_)
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

    def evaluate(self, validator: Validator) -> Evaluated:
        """Evaluate as `validator`. Updates it cannot fetch are waited for until the committee's fetch
        cut-off; in one process nobody uploads anything meanwhile, so the chain's clock jumps there."""
        try:
            return validator.evaluate(self.task)
        except UpdatesPending as pending:
            self.chain.increase_time(pending.cutoff - self.chain.now())
            return validator.evaluate(self.task)


def default_durations() -> Durations:
    """Phase durations for a simulation: long enough that nobody misses a deadline by accident."""
    return Durations(
        recruitment=3600, training=3600, evaluation=3600, reveal=3600, idle=86400, claim=30 * 86400
    )
