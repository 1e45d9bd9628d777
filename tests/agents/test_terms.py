"""Tasks an agent does not serve: a description that names code, is out of range or unreadable is refused
and nothing is imported; the operator's terms (reward, phase durations, epochs, validator stake lock)
skip tasks; one bad task never stops an agent from serving the others."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from refiner.agents import Agent, RequesterAgent, Terms, ValidatorAgent, WorkerAgent
from refiner.agents.terms import DAY, refusal, worst_case_lock
from refiner.chain import Chain, Durations, Status, Task, TaskConfig, demo_account, public_key_bytes
from refiner.fl.data import Dataset, load_mnist, split_mnist
from refiner.fl.models import logistic
from refiner.roles import Administrator, Requester, Validator, Worker
from refiner.units import ETH
from refiner.wire.spec import TaskDescription

KEY = "ab" * 64
DURATIONS = Durations(recruitment=600, training=600, evaluation=600, reveal=60, idle=600, claim=6000)
PROBE = "evil_import_probe_agents"


def config(description: str = "", **changes: object) -> TaskConfig:
    base = TaskConfig(
        description or TaskDescription(KEY, model="logistic").to_json(),
        worker_reward=ETH,
        validator_reward=ETH // 3,
        max_rounds=1,
        max_workers=2,
        committee_size=2,
        durations=DURATIONS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def raw(**fields: object) -> str:
    return json.dumps({"refiner": 1, "requester_public_key": KEY, **fields})


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module on sys.path whose import would be seen: no task may get it imported."""
    (tmp_path / f"{PROBE}.py").write_text("raise SystemExit('imported by a task description')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, PROBE, raising=False)
    return PROBE


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"model": "os:abort"}, "'os:abort' names code to import"),
        ({"model": "sys:exit"}, "'sys:exit' names code to import"),
        ({"model": "os:getpid"}, "'os:getpid' names code to import"),
        ({"model": f"{PROBE}:f"}, "names code to import"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"epochs": 10**12}, "epochs must be 1 to 100"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"batch_size": 1}, "batch_size must be 8 to 8192"),
        ({"max_model_bytes": 1 << 40}, "max_model_bytes must be 1 to 1073741824"),
        ({"lr": -1}, "lr must be a finite number"),
        ({"data_format": "x" * 5000}, "data_format is 5000 characters"),
    ],
)
def test_a_bad_description_is_refused_and_nothing_is_imported(
    fields: dict[str, object], reason: str, probe: str
) -> None:
    for validator in (False, True):
        for joined in (False, True):
            found = refusal(config(raw(**fields)), Terms(), {}, validator=validator, joined=joined)
            assert found is not None and reason in found
    assert probe not in sys.modules


def test_a_local_model_is_served_by_name_only() -> None:
    mine = config(raw(model="my_net"))
    assert refusal(mine, Terms(), {}, validator=False, joined=False) == (
        refusal(mine, Terms(), {}, validator=False, joined=False)
    )
    assert "unknown model 'my_net'" in str(refusal(mine, Terms(), {}, validator=False, joined=False))
    assert refusal(mine, Terms(), {"my_net": logistic}, validator=False, joined=False) is None


def test_terms_skip_tasks_that_pay_too_little_last_or_lock_too_long() -> None:
    good = config()
    assert refusal(good, Terms(), {}, validator=False, joined=False) is None
    assert refusal(good, Terms(), {}, validator=True, joined=False) is None
    free = config(validator_reward=0)
    assert refusal(free, Terms(), {}, validator=True, joined=False) == "it pays validators nothing"
    assert refusal(free, Terms(), {}, validator=False, joined=False) is None
    low = Terms(min_reward=ETH + 1)
    assert "under the minimum" in str(refusal(good, low, {}, validator=False, joined=False))
    assert "under the minimum" in str(refusal(good, Terms(min_reward=ETH), {}, validator=True, joined=False))
    short = Terms(max_durations={"training": 599})
    assert refusal(good, short, {}, validator=False, joined=False) == (
        "its training phase lasts 600 s, more than the maximum of 599 s"
    )
    assert refusal(good, Terms(max_durations={"training": 600}), {}, validator=False, joined=False) is None
    busy = config(TaskDescription(KEY, model="logistic", epochs=5).to_json())
    assert "5 epochs per round" in str(refusal(busy, Terms(max_epochs=4), {}, validator=False, joined=False))
    assert refusal(busy, Terms(max_epochs=5), {}, validator=False, joined=False) is None
    # a month of idle waits between 100 rounds: 100 × 30 days
    long = config(max_rounds=100, durations=replace(DURATIONS, idle=30 * DAY))
    assert worst_case_lock(long) == 600 + 100 * (30 * DAY + 600 + 600 + 60)
    assert worst_case_lock(long, seat_lock=30 * DAY) == 30 * DAY  # the registry's bound caps it
    assert "can lock the stake" in str(refusal(long, Terms(), {}, validator=True, joined=False))
    assert refusal(long, Terms(), {}, validator=False, joined=False) is None  # workers bond nothing
    assert refusal(long, Terms(max_lock=worst_case_lock(long)), {}, validator=True, joined=False) is None
    # a task already joined is served whatever the terms (its rewards are still to be claimed)
    assert refusal(long, Terms(min_reward=10 * ETH), {}, validator=True, joined=True) is None
    with pytest.raises(ValueError, match=r"unknown phase\(s\) \['train'\]"):
        Terms(max_durations={"train": 1})


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, list[Dataset]]:
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [300, 400], validation_size=300, seed=3)
    return validation, shards


def test_agents_skip_bad_tasks_and_serve_the_good_one(
    data: tuple[Dataset, list[Dataset]], tmp_path: Path, probe: str, caplog: pytest.LogCaptureFixture
) -> None:
    from refiner.storage import DirectoryStore

    caplog.set_level(logging.INFO, logger="refiner.agent")
    validation, shards = data
    chain = Chain.connect()
    store = DirectoryStore(tmp_path / "store")
    names = ["admin", "req", "evil", "w0", "w1", "v0", "v1"]
    accounts = {name: demo_account(f"terms-{name}") for name in names}
    for a in accounts.values():
        chain.fund(a.address, 100 * ETH)
    registry = Administrator.deploy_registry(chain, accounts["admin"], min_stake=ETH, stake_unit=ETH)
    requester = Requester(accounts["req"], chain, store, registry)
    key = public_key_bytes(accounts["req"]).hex()
    evil = Requester(accounts["evil"], chain, store, registry)
    evil_key = public_key_bytes(accounts["evil"]).hex()
    bad: dict[str, str] = {}
    for label, description in [
        ("abort", raw(requester_public_key=evil_key, model="os:abort")),
        ("exit", raw(requester_public_key=evil_key, model="sys:exit")),
        ("probe", raw(requester_public_key=evil_key, model=f"{probe}:build")),
        ("epochs", raw(requester_public_key=evil_key, model="logistic", epochs=10**12)),
        ("brackets", "[" * 16_000),
    ]:
        t = Task.deploy(chain, accounts["evil"], registry.address, config(description))
        registry.register_task(accounts["evil"], t.address)
        bad[t.address] = label
    for address in bad:  # joinable, and must not be joined
        evil.open_recruitment(Task(chain, address))
    workers = [
        WorkerAgent(
            accounts[f"w{i}"],
            registry,
            worker=Worker(accounts[f"w{i}"], chain, store, registry, data=shards[i], seed=i),
        )
        for i in range(2)
    ]
    validators = [
        ValidatorAgent(
            accounts[f"v{i}"],
            registry,
            validator=Validator(accounts[f"v{i}"], chain, store, registry),
            stake=ETH,
        )
        for i in range(2)
    ]
    for agent in [*workers, *validators]:
        agent.prepare()
    task = requester.create_task(config(), TaskDescription(key, model="logistic", lr=0.05))
    boss = RequesterAgent(
        accounts["req"], registry, requester=requester, validation=validation, min_workers=2, min_seats=2
    )
    agents: list[Agent] = [boss, *workers, *validators]
    for _ in range(40):
        if all([agent.tick() for agent in agents]):
            break
        if task.status() is Status.RECRUITING:
            chain.mine(2)  # the seed block
    else:
        pytest.fail(f"the good task did not finish: status {task.status().name}")

    assert task.status() is Status.TERMINATED and task.round_info(1).consensus_key != bytes(32)
    for i in range(2):
        assert task.submitted_samples(1, accounts[f"w{i}"].address) == len(shards[i])
    for agent in [*workers, *validators]:
        assert set(agent.skipped) == set(bad) and task.address in agent.tasks
    for address in bad:
        assert Task(chain, address).workers() == [] and Task(chain, address).committee() == {}
    assert probe not in sys.modules
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skips) == 4 * len(bad)  # one line per agent and bad task, not one per tick
    assert any("'os:abort' names code to import" in line for line in skips)
    assert any("epochs must be 1 to 100, not 1000000000000" in line for line in skips)
    assert any("nests JSON 16000 levels deep" in line for line in skips)


def test_agents_join_only_tasks_within_their_operator_s_terms(tmp_path: Path) -> None:
    from refiner.fl.data import synthetic_dataset
    from refiner.storage import DirectoryStore

    chain = Chain.connect()
    store = DirectoryStore(tmp_path / "store")
    accounts = {name: demo_account(f"terms2-{name}") for name in ["admin", "req", "w", "v"]}
    for a in accounts.values():
        chain.fund(a.address, 100 * ETH)
    registry = Administrator.deploy_registry(chain, accounts["admin"], min_stake=ETH, stake_unit=ETH)
    requester = Requester(accounts["req"], chain, store, registry)
    description = TaskDescription(public_key_bytes(accounts["req"]).hex(), model="logistic")
    tasks = {
        "good": config(),
        "cheap": config(worker_reward=ETH // 10),
        "slow": config(durations=replace(DURATIONS, training=7 * DAY)),
        "unpaid validators": config(validator_reward=0),
        "long lock": config(max_rounds=100, durations=replace(DURATIONS, idle=DAY)),
    }
    worker = WorkerAgent(
        accounts["w"],
        registry,
        worker=Worker(accounts["w"], chain, store, registry, data=synthetic_dataset(20, 0)),
        terms=Terms(min_reward=ETH // 2, max_durations={"training": DAY}),
    )
    validator = ValidatorAgent(
        accounts["v"],
        registry,
        validator=Validator(accounts["v"], chain, store, registry),
        stake=ETH,
        terms=Terms(max_lock=10 * DAY),  # under the registry's 30-day seat lock
    )
    for agent in (worker, validator):
        agent.prepare()  # registered (and staked) before the tasks' sortition snapshots
    deployed = {label: requester.create_task(c, description) for label, c in tasks.items()}
    for task in deployed.values():
        requester.open_recruitment(task)
    seed_block = max(t.seed_block() for t in deployed.values())
    chain.mine(seed_block + 1 - chain.w3.eth.block_number)  # past the seed epoch's first block
    for agent in (worker, validator):
        agent.tick()
        agent.tick()
    joined_by_worker = {label for label, t in deployed.items() if accounts["w"].address in t.workers()}
    seated = {label for label, t in deployed.items() if accounts["v"].address in t.committee()}
    assert joined_by_worker == {"good", "unpaid validators", "long lock"}
    assert seated == {"good", "cheap", "slow"}
    assert {deployed[label].address for label in ("cheap", "slow")} == set(worker.skipped)
    assert "under the minimum of 500000000000000000 wei" in worker.skipped[deployed["cheap"].address]
    assert validator.skipped[deployed["unpaid validators"].address] == "it pays validators nothing"
    assert "can lock the stake" in validator.skipped[deployed["long lock"].address]
