"""`refiner serve` for a participant's own account (no --demo): each participant its own server, one
account in one role, sharing only the chain and the store. A round is driven through the servers' APIs
on the embedded chain; the browser test on anvil and IPFS is tests/integration/test_own_servers.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from refiner.chain import Chain, Registry, Task, demo_account
from refiner.cli import app
from refiner.fl.data import Dataset, split_mnist
from refiner.roles import Administrator
from refiner.storage import DirectoryStore
from refiner.units import ETH
from refiner.web.api import create_app
from refiner.web.host import AgentOptions, Host
from tests.web.client import page_client

SETTINGS = {
    "model": "logistic",
    "lr": 0.05,
    "max_rounds": 1,
    "max_workers": 2,
    "committee_size": 8,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "1.3 ether",
}


@dataclass
class Servers:
    chain: Chain
    registry: Registry
    requester: TestClient
    workers: list[TestClient]
    validator: TestClient


def own(client: TestClient) -> str:
    accounts = client.get("/api/session").json()["accounts"]
    assert len(accounts) == 1
    return str(accounts[0]["address"])


def post(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def wait_job(client: TestClient, job: str) -> None:
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] != "running":
            assert state["state"] == "done", state
            return
        time.sleep(0.1)
    raise AssertionError("job did not finish")


def guide(client: TestClient, task: str) -> dict[str, Any]:
    r = client.get(f"/api/tasks/{task}/guide", params={"account": own(client)})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, mnist: tuple[Dataset, Dataset]) -> Iterator[Servers]:
    train, test = mnist
    validation, shards = split_mnist(train, [300, 300], validation_size=300, seed=3)
    chain = Chain.connect()
    store = DirectoryStore(tmp_path_factory.mktemp("own") / "store")
    admin = demo_account("own-admin")
    accounts: dict[str, LocalAccount] = {
        name: demo_account(f"own-{name}") for name in ("requester", "worker-0", "worker-1", "validator")
    }
    for account in [admin, *accounts.values()]:
        chain.fund(account.address, 100 * ETH)
    registry = Administrator.deploy_registry(chain, admin, min_stake=ETH, stake_unit=ETH)

    def serve(name: str, role: Any, **kwargs: Any) -> TestClient:
        host = Host.for_account(registry, store, accounts[name], role, test=test, **kwargs)
        return page_client(create_app(host))

    requester = serve("requester", "requester", validation=validation)
    workers = [serve(f"worker-{i}", "worker", data=shards[i]) for i in range(2)]
    validator = serve("validator", "validator", options=AgentOptions(stake=2 * ETH))
    with requester, workers[0], workers[1], validator:
        yield Servers(chain, registry, requester, workers, validator)


def test_each_server_holds_one_account_and_registers_it(servers: Servers) -> None:
    session = servers.workers[0].get("/api/session").json()
    assert session["demo"] is False and [a["role"] for a in session["accounts"]] == ["worker"]
    assert servers.registry.is_worker(own(servers.workers[0]))
    assert servers.registry.is_validator(own(servers.validator))
    assert servers.registry.validator_info(own(servers.validator)).stake == 2 * ETH
    feed = servers.validator.get("/api/activity").json()
    assert [e["text"] for e in feed["entries"]] == ["registered as a validator with a stake of 2 ETH"]
    # another participant's key is not here: it cannot act through this server
    r = servers.workers[0].post("/api/tasks", json={"account": own(servers.requester), "settings": SETTINGS})
    assert r.status_code == 403 and "holds no key" in r.json()["detail"]


def test_a_round_across_the_participants_own_servers(servers: Servers) -> None:
    requester, (w0, w1), validator = servers.requester, servers.workers, servers.validator
    task = post(requester, "/api/tasks", account=own(requester), settings=SETTINGS)["address"]
    base = f"/api/tasks/{task}"
    # each server sees the task the requester posted; a worker with nothing to do says what it waits for
    assert w0.get(base).json()["address"] == task
    hint = guide(w0, task)
    assert hint["next"] is None and hint["waiting"] == "waiting for the requester to open recruitment"
    assert guide(requester, task)["next"]["text"] == "next: open recruitment"
    post(requester, f"{base}/open-recruitment", account=own(requester))
    chain, seed_block = servers.chain, Task(servers.chain, task).seed_block()
    chain.mine(max(1, seed_block + 1 - chain.w3.eth.block_number))  # (a real chain mines by itself)
    for w in (w0, w1):
        assert guide(w, task)["next"]["action"] == "sign-up"
        post(w, f"{base}/sign-up", account=own(w))
    assert guide(w0, task)["waiting"].startswith("waiting for recruitment to close (workers sign up")
    assert "won" in post(validator, f"{base}/claim-seat", account=own(validator))["message"]
    post(requester, f"{base}/close-recruitment", account=own(requester))
    post(requester, f"{base}/start-round", account=own(requester))
    # a participant's own server has its own data only
    r = w0.post(f"{base}/train", json={"account": own(w0), "dataset": "bad"})
    assert r.status_code == 422 and "only the worker's own data" in r.json()["detail"]
    for w in (w0, w1):
        wait_job(w, post(w, f"{base}/train", account=own(w), dataset="good")["job"])
    assert guide(w0, task)["waiting"].startswith("waiting for the validators' commitments (the phase ends in")
    wait_job(validator, post(validator, f"{base}/evaluate", account=own(validator))["job"])
    post(validator, f"{base}/commit-manifest", account=own(validator))
    post(validator, f"{base}/reveal-manifest", account=own(validator))
    post(requester, f"{base}/finalize-round", account=own(requester))
    paid = [post(w, f"{base}/claim-reward", account=own(w), round=1)["message"] for w in (w0, w1)]
    assert all("received" in p for p in paid), paid
    assert (
        "received 300000000000000000 wei"
        in post(validator, f"{base}/claim-reward", account=own(validator), round=1)["message"]
    )
    detail = requester.get(base).json()
    assert detail["rounds"][0]["test_accuracy"] > 0.5  # the requester's server retrieved and scored it


def test_auto_mode_says_what_the_agent_does_and_waits_for(servers: Servers) -> None:
    requester, worker = servers.requester, servers.workers[0]
    task = post(requester, "/api/tasks", account=own(requester), settings=SETTINGS)["address"]
    seen = worker.get("/api/activity").json()["entries"]
    after = seen[-1]["seq"] if seen else 0
    assert post(worker, "/api/mode", mode="auto")["mode"] == "auto"
    try:
        deadline = time.monotonic() + 60
        texts: list[str] = []
        while time.monotonic() < deadline:
            feed = worker.get("/api/activity", params={"after": after}).json()
            texts = [e["text"] for e in feed["entries"]]
            if any("waiting for the requester to open recruitment" in t for t in texts):
                break
            time.sleep(0.2)
        assert texts[0] == "auto mode on: the agents act", texts
        assert f"following task {task}" in texts, texts
        assert f"task {task[:10]}: waiting for the requester to open recruitment" in texts, texts
        r = worker.post(f"/api/tasks/{task}/sign-up", json={"account": own(worker)})
        assert r.status_code == 409 and "auto mode is on" in r.json()["detail"]
    finally:
        post(worker, "/api/mode", mode="manual")
    assert worker.get("/api/activity").json()["entries"][-1]["text"] == "auto mode off: act by hand"


def test_serve_without_demo_asks_for_the_role_and_its_data(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: pass --role requester, worker or validator (your account's role), or --demo for the demo"
    )
    result = runner.invoke(app, ["serve", "--role", "worker"])
    assert result.exit_code == 1 and "pass --data FILE" in result.output
    result = runner.invoke(app, ["serve", "--role", "requester"])
    assert result.exit_code == 1 and "pass --validation FILE" in result.output
    result = runner.invoke(app, ["serve", "--demo", "--role", "worker"])
    assert result.exit_code == 1 and "--demo hosts the demo's participants" in result.output
