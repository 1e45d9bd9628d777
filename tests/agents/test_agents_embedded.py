"""The agents on the embedded chain, ticked in turn in one process: they drive a whole task from
recruitment to the last claim; agents replaced by fresh ones (a restart: no memory) carry on without
acting twice; a non-revealing validator and deadlines are handled by `advance`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from refiner.adversary import make_validator
from refiner.agents import Agent, RequesterAgent, ValidatorAgent, WorkerAgent
from refiner.chain import Chain, Durations, Status, TaskConfig, demo_account, public_key_bytes
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.roles import Administrator, Requester, ValidatorBehaviour, Worker
from refiner.storage import DirectoryStore
from refiner.units import ETH
from refiner.wire.spec import TaskDescription


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, list[Dataset]]:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 400, 500], validation_size=300, seed=2)
    return validation, shards


def test_agents_run_a_task_to_the_end_through_restarts(
    data: tuple[Dataset, list[Dataset]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="refiner.agent")
    validation, shards = data
    chain = Chain.connect()
    store = DirectoryStore(tmp_path / "store")
    names = ["admin", "req", "w0", "w1", "w2", "v0", "v1", "v2"]
    accounts = {name: demo_account(f"agents-{name}") for name in names}
    for a in accounts.values():
        chain.fund(a.address, 100 * ETH)
    registry = Administrator.deploy_registry(chain, accounts["admin"], min_stake=ETH, stake_unit=ETH)
    requester = Requester(accounts["req"], chain, store, registry)
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=ETH // 3,
        target_accuracy=1.0,
        max_rounds=2,
        max_workers=3,
        committee_size=3,
        durations=Durations(recruitment=600, training=600, evaluation=600, reveal=60, idle=600, claim=6000),
    )
    description = TaskDescription(public_key_bytes(accounts["req"]).hex(), model="logistic", lr=0.05)

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
            assert task.submission_of(round_, accounts[f"w{i}"].address)[0] == len(shards[i])
    assert task.balance() == task.owed()
    assert (tmp_path / "model.safetensors").stat().st_size > 0
    assert "revealed round" in caplog.text and "claimed" in caplog.text
    unpaid = [r.getMessage() for r in caplog.records if "nothing to claim for round" in r.getMessage()]
    assert unpaid and all(": rejected: " in m for m in unpaid), unpaid
