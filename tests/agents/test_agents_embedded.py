"""The agents on the embedded chain, ticked in turn in one process: they drive a whole task from
recruitment to the last claim; agents replaced by fresh ones (a restart: no memory) carry on without
acting twice; a non-revealing validator and deadlines are handled by `advance`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from refiner.adversary import make_validator
from refiner.agents import Agent, RequesterAgent, ValidatorAgent, WorkerAgent
from refiner.chain import Chain, Durations, Registry, Status, TaskConfig, demo_account, public_key_bytes
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.roles import Administrator, Requester, ValidatorBehaviour, Worker
from refiner.storage import DirectoryStore
from refiner.units import ETH
from refiner.wire.reads import consensus_details
from refiner.wire.spec import TaskDescription


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, list[Dataset]]:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 400, 500], validation_size=300, seed=2)
    return validation, shards


@dataclass
class Setting:
    """A fresh embedded chain, store and registry; funded accounts; a two-round logistic task's terms."""

    chain: Chain
    store: DirectoryStore
    accounts: dict[str, LocalAccount]
    registry: Registry
    requester: Requester
    config: TaskConfig
    description: TaskDescription


def setting(tmp_path: Path, label: str, workers: int) -> Setting:
    chain = Chain.connect()
    store = DirectoryStore(tmp_path / "store")
    names = ["admin", "req", *(f"w{i}" for i in range(workers)), "v0", "v1", "v2"]
    accounts = {name: demo_account(f"{label}-{name}") for name in names}
    for a in accounts.values():
        chain.fund(a.address, 100 * ETH)
    registry = Administrator.deploy_registry(chain, accounts["admin"], min_stake=ETH, stake_unit=ETH)
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=ETH // 3,
        target_accuracy=1.0,
        max_rounds=2,
        max_workers=workers,
        committee_size=3,
        durations=Durations(recruitment=600, training=600, evaluation=600, reveal=60, idle=600, claim=6000),
    )
    description = TaskDescription(public_key_bytes(accounts["req"]).hex(), model="logistic", lr=0.05)
    requester = Requester(accounts["req"], chain, store, registry)
    return Setting(chain, store, accounts, registry, requester, config, description)


def test_agents_run_a_task_to_the_end_through_restarts(
    data: tuple[Dataset, list[Dataset]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="refiner.agent")
    validation, shards = data
    world = setting(tmp_path, "agents", 3)
    chain, store, accounts, registry = world.chain, world.store, world.accounts, world.registry
    requester, config, description = world.requester, world.config, world.description

    def worker_agent(i: int) -> WorkerAgent:
        # worker 2 trains on shuffled labels: rejected, and its log says why it is not paid
        own = shuffle_labels(shards[i], seed=i) if i == 2 else shards[i]
        role = Worker(accounts[f"w{i}"], chain, store, registry, data=own, seed=i)
        return WorkerAgent(accounts[f"w{i}"], registry, worker=role)

    def validator_agent(i: int) -> ValidatorAgent:
        behaviour = ValidatorBehaviour.NON_REVEALER if i == 2 else ValidatorBehaviour.HONEST
        role = make_validator(behaviour, accounts[f"v{i}"], chain, store, registry)
        return ValidatorAgent(accounts[f"v{i}"], registry, validator=role, stake=ETH)

    workers = [worker_agent(i) for i in range(3)]
    validators = [validator_agent(i) for i in range(3)]
    for agent in [*workers, *validators]:
        agent.prepare()
    task = requester.create_task(config, description)
    boss = RequesterAgent(
        accounts["req"],
        registry,
        requester=requester,
        validation=validation,
        min_workers=3,
        min_seats=3,
        out=tmp_path / "model.safetensors",
    )
    agents: list[Agent] = [boss, *workers, *validators]
    restarted = False
    for _ in range(60):
        done = [agent.tick() for agent in agents]
        if all(done):
            break
        status = task.status()
        if status is Status.RECRUITING:
            chain.mine(2)  # the seed block
        if status is Status.REVEALING and task.round_info(task.current_round()).reveals == 2:
            chain.increase_time(61)  # the non-revealer makes everyone wait for the reveal deadline
        reveals = task.round_info(task.current_round()).reveals
        if status is Status.REVEALING and not restarted and reveals == 0:
            # a validator and a worker crash: their replacements know only the chain and the store
            agents[agents.index(validators[0])] = validator_agent(0)
            agents[agents.index(workers[1])] = worker_agent(1)
            restarted = True
    else:
        pytest.fail(f"the task did not finish: status {task.status().name}, round {task.current_round()}")

    assert restarted and task.status() is Status.TERMINATED and task.current_round() == 2
    for round_ in (1, 2):
        assert task.round_info(round_).consensus_key != bytes(32)
        paid = {e["account"] for e in task.round_events("RewardClaimed", round_)}
        assert {accounts["v0"].address, accounts["v1"].address} <= paid
        assert accounts["v2"].address not in paid
        for i in range(3):  # every submission of every worker was made exactly once and settled
            assert task.submitted_samples(round_, accounts[f"w{i}"].address) == len(shards[i])
    assert task.balance() == task.owed()
    assert (tmp_path / "model.safetensors").stat().st_size > 0
    assert "revealed round" in caplog.text and "claimed" in caplog.text
    unpaid = [r.getMessage() for r in caplog.records if "nothing to claim for round" in r.getMessage()]
    assert unpaid and all(": rejected: " in m for m in unpaid), unpaid


def test_agents_that_claim_once_are_paid_for_every_round_in_one_transaction(
    data: tuple[Dataset, list[Dataset]], tmp_path: Path
) -> None:
    """With `claim_once`, workers and validators claim nothing until the task has ended, then one claim
    each pays all its rounds: a worker the `earned` of its last leaf, a validator its two rounds' shares."""
    validation, shards = data
    world = setting(tmp_path, "agents-once", 2)
    chain, store, accounts, registry = world.chain, world.store, world.accounts, world.registry
    requester, config, description = world.requester, world.config, world.description
    workers = [
        WorkerAgent(
            accounts[f"w{i}"],
            registry,
            claim_once=True,
            worker=Worker(accounts[f"w{i}"], chain, store, registry, data=shards[i], seed=i),
        )
        for i in range(2)
    ]
    validators = [
        ValidatorAgent(
            accounts[f"v{i}"],
            registry,
            claim_once=True,
            validator=make_validator(ValidatorBehaviour.HONEST, accounts[f"v{i}"], chain, store, registry),
            stake=ETH,
        )
        for i in range(3)
    ]
    for agent in [*workers, *validators]:
        agent.prepare()
    task = requester.create_task(config, description)
    boss = RequesterAgent(
        accounts["req"], registry, requester=requester, validation=validation, min_workers=2, min_seats=3
    )
    agents: list[Agent] = [boss, *workers, *validators]
    for _ in range(60):
        if all([agent.tick() for agent in agents]):
            break
        if task.status() is Status.RECRUITING:
            chain.mine(2)  # the seed block
        if task.status() is not Status.TERMINATED:
            assert not task.get_events("RewardClaimed"), "a claim before the task ended"
    else:
        pytest.fail(f"the task did not finish: status {task.status().name}, round {task.current_round()}")

    assert task.status() is Status.TERMINATED and task.current_round() == 2
    claims = task.get_events("RewardClaimed")
    by_account = {str(e["account"]): int(e["amount"]) for e in claims}
    assert len(claims) == len(by_account) == 5  # one claim each, every round paid in it
    unit = (ETH // 3) // 3
    for v in validators:
        assert by_account[v.address] == 2 * unit
    for w in workers:
        _, details = consensus_details(store, task, 2)
        (leaf,) = [r for r in details.tree().results if r.worker == w.address]
        shares = []
        for r in (1, 2):
            _, d = consensus_details(store, task, r)
            results = d.tree().results
            total = sum(x.contribution for x in results if x.paid)
            mine = next(x for x in results if x.worker == w.address)
            shares.append(ETH * mine.contribution // total if mine.paid else 0)
        assert by_account[w.address] == leaf.earned == sum(shares) > 0
    assert task.balance() == task.owed()
