"""The page's guide (`GET /api/tasks/{task}/guide`): each action allowed or refused with the protocol's
reason, and the demo's next step named, through a whole manual round."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refiner.web.api import create_app
from refiner.web.host import Host
from tests.web.client import page_client

SETTINGS = {
    "model": "logistic",
    "lr": 0.05,
    "max_rounds": 1,
    "max_workers": 2,
    "committee_size": 10,
    "epsilon": 1.5,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "1.3 ether",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    host = Host.build_demo(tmp_path_factory.mktemp("guide"), workers=2, validators=3, shard=300)
    with page_client(create_app(host)) as client:
        yield client


def test_the_guide_walks_a_manual_round(client: TestClient) -> None:
    accounts = client.get("/api/session").json()["accounts"]
    label = {a["address"]: a["label"] for a in accounts}
    r = next(a["address"] for a in accounts if a["role"] == "requester")
    workers = [a["address"] for a in accounts if a["role"] == "worker"]
    validators = [a["address"] for a in accounts if a["role"] == "validator"]

    def post(path: str, **body: Any) -> dict[str, Any]:
        response = client.post(f"/api/tasks/{task}/{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def guide(account: str) -> dict[str, Any]:
        response = client.get(f"/api/tasks/{task}/guide", params={"account": account})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def wait(job: str) -> None:
        for _ in range(1200):
            if client.get(f"/api/jobs/{job}").json()["state"] != "running":
                return
            time.sleep(0.05)

    created = client.post("/api/tasks", json={"account": r, "settings": SETTINGS})
    task = created.json()["address"]
    g = guide(r)
    assert g["next"]["text"] == "next: open recruitment" and g["actions"]["open_recruitment"] is None
    assert "while RECRUITING" in g["actions"]["close_recruitment"]
    assert guide(workers[0])["next"]["text"] == "next: switch to requester and open recruitment"
    post("open-recruitment", account=r)

    g = guide(r)["next"]
    assert g["text"] == f"next: switch to {label[workers[0]]} and sign up" and g["action"] == "sign-up"
    assert g["accounts"] == workers[:2]  # one click signs up as many as the task takes
    for w in workers:
        post("sign-up", account=w)
    g = guide(r)["next"]
    assert g["step"] == "claim_seat" and g["accounts"] == validators
    for v in validators:
        post("claim-seat", account=v)
    seated = [m["address"] for m in client.get(f"/api/tasks/{task}").json()["committee"]]
    assert seated
    assert guide(r)["next"]["text"] == "next: close recruitment"  # nobody else has anything left to do
    post("close-recruitment", account=r)
    assert guide(r)["next"]["text"] == "next: start round 1"
    assert client.get(f"/api/tasks/{task}").json()["initial_test_accuracy"] is None
    post("start-round", account=r)
    initial = client.get(f"/api/tasks/{task}").json()["initial_test_accuracy"]
    assert 0 <= initial < 0.5  # round 0 of the learning curve: the untrained model, scored as round 1 started

    g = guide(workers[0])
    assert g["next"]["action"] == "train" and g["actions"]["submit_training_results"] is None
    for w in workers:
        wait(post("train", account=w, dataset="good")["job"])
    g = guide(seated[0])
    assert g["next"]["action"] == "evaluate" and g["next"]["accounts"] == seated
    assert "evaluate first" in g["actions"]["commit_manifest"]  # was enabled, and failed when clicked
    assert g["actions"]["evaluate"] is None
    for v in seated:
        wait(post("evaluate", account=v)["job"])
    g = guide(seated[0])
    assert g["actions"]["commit_manifest"] is None
    assert g["next"]["action"] == "commit-manifest" and g["next"]["text"] == "next: commit its manifest"
    for v in seated:
        post("commit-manifest", account=v)
    assert guide(seated[0])["next"]["action"] == "reveal-manifest"
    for v in seated:
        post("reveal-manifest", account=v)
    assert guide(workers[0])["next"]["text"] == "next: switch to requester and finalize round 1"
    post("finalize-round", account=r)
    client.get(f"/api/tasks/{task}")  # the page reads the settled round's details

    paid = guide(workers[0])
    assert paid["claims"] == {"1": None}
    assert paid["next"]["step"] == "claim_reward" and paid["next"]["round"] == 1
    post("claim-reward", account=workers[0], round=1)
    again = guide(workers[0])["claims"]["1"]
    assert again is not None and "already claimed" in again
    outsider = [v for v in validators if v not in seated]
    if outsider:
        assert "not on this task's committee" in guide(outsider[0])["claims"]["1"]
