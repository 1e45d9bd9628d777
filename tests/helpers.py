"""Drive a task through the protocol in tests: small building blocks over the real contracts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from refiner.chain import (
    Chain,
    ContractRevert,
    Durations,
    Manifest,
    Registry,
    ResultsTree,
    Task,
    TaskConfig,
    TxResult,
    WorkerResult,
    demo_account,
)
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw
from refiner.chain.earnings import with_earnings
from refiner.fl.data import Dataset
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import Store
from refiner.units import ETH

WORKER_REWARD = 10**18
VALIDATOR_REWARD = 3 * 10**17
STAKE = 10**18
FAST = Durations(recruitment=100, training=100, evaluation=100, reveal=100, idle=1000, claim=1000)


@contextmanager
def refused(error: str, **args: Any) -> Iterator[None]:
    """Expect the block to be refused by a contract with the custom error `error` and (some of) these
    arguments; hex strings compare without regard to case."""
    with pytest.raises(ContractRevert) as exc:
        yield
    assert exc.value.error == error, f"expected {error}, got {exc.value}"
    for name, value in args.items():
        actual = exc.value.args_by_name[name]
        same = (
            actual.lower() == value.lower()
            if isinstance(actual, str) and isinstance(value, str)
            else (actual == value)
        )
        assert same, f"{name}: {exc.value.args_by_name}"


@dataclass
class World:
    """A funded embedded chain with a registry, six registered workers, six registered validators and
    accounts that hold no role yet. Each test gets it reverted to the same snapshot."""

    chain: Chain
    registry: Registry
    admin: LocalAccount
    requester: LocalAccount
    workers: list[LocalAccount]
    validators: list[LocalAccount]
    fresh: list[LocalAccount]
    outsider: LocalAccount


def build_world(chain: Chain, n_workers: int = 6, n_validators: int = 6, n_fresh: int = 4) -> World:
    admin = demo_account("admin")
    requester = demo_account("requester")
    workers = [demo_account(f"worker-{i}") for i in range(n_workers)]
    validators = [demo_account(f"validator-{i}") for i in range(n_validators)]
    fresh = [demo_account(f"fresh-{i}") for i in range(n_fresh)]
    outsider = demo_account("outsider")
    for account in [admin, requester, *workers, *validators, *fresh, outsider]:
        chain.fund(account.address, 1000 * ETH)
    # one stake unit per ETH: each test validator (1 ETH) has sortition weight 1
    registry = Registry.deploy(chain, admin, min_stake=10**15, unbonding_delay=500, stake_unit=STAKE)
    for w in workers:
        registry.register_worker(w)
    for v in validators:
        registry.register_validator(v, STAKE)
    return World(chain, registry, admin, requester, workers, validators, fresh, outsider)


def config(**overrides: object) -> TaskConfig:
    base = TaskConfig(
        description="MNIST digits: 28x28 grayscale, labels 0-9",
        worker_reward=WORKER_REWARD,
        validator_reward=VALIDATOR_REWARD,
        target_accuracy=0.99,
        max_rounds=3,
        max_workers=5,
        committee_size=64,  # τ ≥ total stake units: every validator wins all its units (p = 1)
        epsilon=1.0,
        durations=FAST,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def new_task(world: World, register: bool = True, value: int = 0, **overrides: object) -> Task:
    task = Task.deploy(world.chain, world.requester, world.registry.address, config(**overrides), value=value)
    if register:
        world.registry.register_task(world.requester, task.address)
    return task


def recruit(
    world: World, task: Task, n_workers: int = 3, n_validators: int = 3
) -> tuple[list[LocalAccount], list[LocalAccount]]:
    """Open recruitment, sign up the first workers, seat the first validators by sortition, close."""
    workers = world.workers[:n_workers]
    validators = world.validators[:n_validators]
    task.open_recruitment(world.requester)
    for w in workers:
        task.sign_up(w)
    for v in validators:
        seat(world, task, v)
    task.close_recruitment(world.requester)
    return workers, validators


def seat(world: World, task: Task, validator: LocalAccount) -> TxResult:
    """`validator` draws its sortition for `task` and claims the seats it won."""
    ticket = draw(task, world.registry, validator.address, vrf_key_for(validator), sender=validator)
    return task.claim_seat(validator, ticket.proof, ticket.seats)


def handle(label: str) -> bytes:
    """A stand-in storage handle (CIDv1-sized bytes) derived from a label."""
    return b"\x01\x55\x12\x20" + hashlib.sha256(label.encode()).digest()


def start_round(world: World, task: Task, value: int | None = None) -> TxResult:
    cfg = task.config()
    amount = cfg.worker_reward + cfg.validator_reward if value is None else value
    r = task.current_round() + 1
    return task.start_round(
        world.requester,
        handle(f"model-{r}"),
        handle(f"model-keys-{r}"),
        handle(f"validation-{r}"),
        handle(f"validation-keys-{r}"),
        value=amount,
    )


def submit_all(task: Task, workers: Sequence[LocalAccount], samples: Sequence[int] | None = None) -> None:
    samples = samples or [1000 * (i + 1) for i in range(len(workers))]
    r = task.current_round()
    for w, n in zip(workers, samples, strict=True):
        task.submit_training_results(w, handle(f"update-{r}-{w.address}"), handle(f"keys-{r}-{w.address}"), n)


def results_tree(
    workers: Sequence[LocalAccount],
    samples: Sequence[int] | None = None,
    contributions: Sequence[int] | None = None,
    accepted: Sequence[bool] | None = None,
    *,
    reward: int = WORKER_REWARD,
    before: Mapping[str, int] | None = None,
) -> ResultsTree:
    """A round's results tree, each leaf carrying its worker's earnings: `before` the round (by address)
    plus its share of `reward` (the task's worker reward)."""
    n = len(workers)
    samples = samples or [1000 * (i + 1) for i in range(n)]
    contributions = contributions or [100 * (i + 1) for i in range(n)]
    accepted = accepted or [True] * n
    results = [
        WorkerResult(w.address, a, s, c)
        for w, s, c, a in zip(workers, samples, contributions, accepted, strict=True)
    ]
    return ResultsTree(with_earnings(results, reward, before or {}))


def salt_for(validator: LocalAccount, round_: int) -> bytes:
    return hashlib.sha256(f"salt-{validator.address}-{round_}".encode()).digest()


def commit_all(task: Task, validators: Sequence[LocalAccount], manifests: Sequence[Manifest]) -> None:
    r = task.current_round()
    for v, m in zip(validators, manifests, strict=True):
        task.commit_manifest(v, task.commitment_for(v.address, r, m, salt_for(v, r)))


def reveal_all(task: Task, validators: Sequence[LocalAccount], manifests: Sequence[Manifest]) -> None:
    r = task.current_round()
    for v, m in zip(validators, manifests, strict=True):
        task.reveal_manifest(v, m, salt_for(v, r))


@dataclass
class PlayedRound:
    round: int
    tree: ResultsTree
    manifest: Manifest
    finalize: TxResult
    dissenters: list[LocalAccount] = field(default_factory=list)


def play_round(
    world: World,
    task: Task,
    workers: Sequence[LocalAccount],
    validators: Sequence[LocalAccount],
    tree: ResultsTree | None = None,
    accuracy: int = 900_000,
    dissenters: int = 0,
) -> PlayedRound:
    """One whole round: start, every worker submits, validators commit and reveal (the last
    `dissenters` with a different manifest), then finalize."""
    start_round(world, task)
    r = task.current_round()
    submit_all(task, workers)
    tree = tree or results_tree(workers)
    digest = hashlib.sha256(f"model-{r}".encode()).digest()
    honest = tree.manifest(accuracy, digest, handle("agg"), handle("det"))
    other = replace(honest, accuracy=accuracy - 1)
    manifests = [honest] * (len(validators) - dissenters) + [other] * dissenters
    commit_all(task, validators, manifests)
    reveal_all(task, validators, manifests)
    fin = task.finalize_round(world.requester)
    return PlayedRound(r, tree, honest, fin, list(validators[len(validators) - dissenters :]))


def logistic_simulation(store: Store, shards: Sequence[Dataset], label: str) -> Simulation:
    """A logistic-model task on a fresh embedded chain: one honest worker per shard and one honest
    validator, recruited and ready for its first round."""
    durations = Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000)
    task_config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=ETH // 10,
        target_accuracy=1.0,
        max_rounds=2,
        max_workers=len(shards),
        committee_size=1,
        epsilon=1.0,
        durations=durations,
    )
    return Simulation.deploy(
        Chain.connect(),
        store,
        shards,
        [WorkerBehaviour.HONEST] * len(shards),
        [ValidatorBehaviour.HONEST],
        config=task_config,
        model="logistic",
        lr=0.05,
        stake_unit=ETH,
        label=label,
    )
