"""The JSON API drives a complete manual-mode round on the demo host: create a task, recruit, start,
train as two workers (one on the bad data), evaluate, commit and reveal, finalize, claim, predict."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refiner.web.api import create_app
from refiner.web.host import Host
from tests.web.client import page_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    host = Host.build_demo(tmp_path_factory.mktemp("serve"), workers=3, validators=4, shard=600)
    with page_client(create_app(host)) as c:
        yield c


def accounts(client: TestClient, role: str) -> list[str]:
    return [a["address"] for a in client.get("/api/session").json()["accounts"] if a["role"] == role]


def post(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def wait_job(client: TestClient, job: str) -> dict[str, Any]:
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] != "running":
            assert state["state"] == "done", state
            return state  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError("job did not finish")


SETTINGS = {
    "model": "logistic",
    "lr": 0.05,
    "max_rounds": 2,
    "max_workers": 2,
    "committee_size": 8,  # τ = 3 left every validator unseated in about 1 run in 20 (e^-τ)
    "epsilon": 1.5,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "2 ether",
}


def test_a_manual_round_through_the_api(client: TestClient) -> None:
    requester = accounts(client, "requester")[0]
    workers, validators = accounts(client, "worker"), accounts(client, "validator")
    task = post(client, "/api/tasks", account=requester, settings=SETTINGS)["address"]
    base = f"/api/tasks/{task}"
    post(client, f"{base}/open-recruitment", account=requester)
    for w in workers[:2]:
        post(client, f"{base}/sign-up", account=w)
    for v in validators:
        post(client, f"{base}/claim-seat", account=v)
    post(client, f"{base}/close-recruitment", account=requester)
    detail = client.get(base).json()
    seated = [m["address"] for m in detail["committee"]]
    assert detail["workers"] == 2 and seated
    post(client, f"{base}/start-round", account=requester)
    jobs = [
        post(client, f"{base}/train", account=workers[0], dataset="good")["job"],
        post(client, f"{base}/train", account=workers[1], dataset="bad")["job"],
    ]
    for j in jobs:
        wait_job(client, j)
    assert client.get(base).json()["status"] == "EVALUATING"
    results = [wait_job(client, post(client, f"{base}/evaluate", account=v)["job"])["result"] for v in seated]
    verdict = {r["worker"]: r["qualified"] for r in results[0]["workers"]}
    assert verdict == {workers[0]: True, workers[1]: False}
    for v in seated:
        post(client, f"{base}/commit-manifest", account=v)
    for v in seated:
        post(client, f"{base}/reveal-manifest", account=v)
    post(client, f"{base}/finalize-round", account=requester)
    claimed = post(client, f"{base}/claim-reward", account=workers[0], round=1)
    assert "received 1000000000000000000 wei" in claimed["message"]
    round1 = client.get(base).json()["rounds"][0]
    assert round1["consensus"] and round1["accepted"] == [workers[0]] and round1["rejected"] == [workers[1]]
    assert round1["test_accuracy"] > 0.5 and round1["gas_used"] > 0
    host: Host = client.app.state.host  # type: ignore[attr-defined]
    scored = dict(host.models)
    host.models.clear()  # scored when the round was settled: reading a page never decrypts or scores
    assert client.get(base).json()["rounds"][0]["test_accuracy"] is None and not host.models
    host.models.update(scored)
    assert round1["worker_payouts_wei"] == {workers[0]: str(10**18)}
    assert round1["reasons"][workers[0]].startswith("paid: its contribution is +")
    assert round1["reasons"][workers[1]].startswith("rejected: its validation loss ")
    digit = client.get("/api/mnist/0").json()
    guess = post(client, "/api/predict", pixels=digit["pixels"], task=task)
    assert len(guess["probabilities"]) == 10 and abs(sum(guess["probabilities"]) - 1) < 1e-4


def test_roles_are_enforced(client: TestClient) -> None:
    requester = accounts(client, "requester")[0]
    worker = accounts(client, "worker")[0]
    r = client.post("/api/tasks", json={"account": worker, "settings": SETTINGS})
    assert r.status_code == 403 and "worker" in r.json()["detail"]
    task = post(client, "/api/tasks", account=requester, settings=SETTINGS)["address"]
    r = client.post(f"/api/tasks/{task}/open-recruitment", json={"account": worker})
    assert r.status_code == 403
    r = client.post(f"/api/tasks/{task}/close-recruitment", json={"account": requester})
    assert r.status_code == 409 and "while RECRUITING; the task is PENDING" in r.json()["detail"]
    r = client.get("/api/tasks/0x" + "12" * 20)
    assert r.status_code == 404
    r = client.post("/api/tasks", json={"account": requester, "settings": {**SETTINGS, "model": "os:system"}})
    assert r.status_code == 422
