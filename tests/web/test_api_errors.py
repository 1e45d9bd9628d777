"""Bad requests get a 4xx that says what is wrong, never a 500; a role sees and does only what that role
may; auto mode drives a round by itself and refuses manual steps while it is on.

Error codes (see `refiner.web.api`): 403 the account may not take the step, 404 unknown task, job,
round or account, 409 not possible now, 422 malformed. Anything else is a bug: a 500.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refiner.chain import demo_account, public_key_bytes
from refiner.config import TaskFile, TaskSection
from refiner.roles import Requester
from refiner.units import ETH
from refiner.web import services
from refiner.web.api import create_app
from refiner.web.host import Host, Job
from tests.web.client import page_client

#: τ = 10 expected seats: the chance that sortition seats nobody (e^-τ·share) is negligible here.
SETTINGS: dict[str, Any] = {
    "model": "logistic",
    "lr": 0.05,
    "max_rounds": 2,
    "max_workers": 2,
    "committee_size": 10,
    "epsilon": 1.5,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "2 ether",
}
STRANGER = "0x" + "11" * 20  # an address this server holds no key for


@dataclass
class Env:
    host: Host
    client: TestClient
    requester: str
    workers: list[str]
    validators: list[str]

    def post(self, path: str, **body: Any) -> Any:
        return self.client.post(path, json=body)

    def ok(self, path: str, **body: Any) -> dict[str, Any]:
        r = self.post(path, **body)
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    def task(self, **settings: Any) -> str:
        return self.ok("/api/tasks", account=self.requester, settings={**SETTINGS, **settings})["address"]  # type: ignore[no-any-return]

    def training_task(self, validators: int = 4) -> tuple[str, list[str]]:
        """A task in its first round's TRAINING phase, the first two workers signed up and the first
        `validators` validators drawn; returns it and its committee."""
        task = self.task()
        self.ok(f"/api/tasks/{task}/open-recruitment", account=self.requester)
        for w in self.workers[:2]:
            self.ok(f"/api/tasks/{task}/sign-up", account=w)
        for v in self.validators[:validators]:
            self.ok(f"/api/tasks/{task}/claim-seat", account=v)
        self.ok(f"/api/tasks/{task}/close-recruitment", account=self.requester)
        self.ok(f"/api/tasks/{task}/start-round", account=self.requester)
        committee = [m["address"] for m in self.client.get(f"/api/tasks/{task}").json()["committee"]]
        assert committee, "sortition seated nobody"
        return task, committee

    def wait(self, job: str) -> dict[str, Any]:
        for _ in range(1200):
            state = self.client.get(f"/api/jobs/{job}").json()
            if state["state"] != "running":
                assert state["state"] == "done", state
                return state  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError(f"job {job} did not finish")


def refused(r: Any, status: int, *words: str) -> str:
    """Assert `r` is a `status` whose one-sentence detail contains every word; return the detail."""
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else " ".join(f"{e['loc']}: {e['msg']}" for e in detail)
    assert text and "\n" not in text, detail
    for word in words:
        assert word in text, (word, detail)
    return text


def _env(host: Host, client: TestClient) -> Env:
    accounts = client.get("/api/session").json()["accounts"]
    role = {
        r: [a["address"] for a in accounts if a["role"] == r] for r in ("requester", "worker", "validator")
    }
    return Env(host, client, role["requester"][0], role["worker"], role["validator"])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    # six validators: the last two never claim seats, so they are never on a committee
    host = Host.build_demo(tmp_path_factory.mktemp("errors"), workers=3, validators=6, shard=300)
    with page_client(create_app(host), raise_server_exceptions=False) as client:
        yield _env(host, client)
        deadline = time.monotonic() + 60
        while any(j.state == "running" for j in host.jobs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------- input


def test_task_addresses(env: Env) -> None:
    task = env.task()
    refused(env.client.get("/api/tasks/0x123"), 422, "pattern")
    refused(env.post("/api/tasks/not-an-address/open-recruitment", account=env.requester), 422)
    assert env.client.get(f"/api/tasks/{task.lower()}").json()["address"] == task  # any letter case
    refused(env.client.get(f"/api/tasks/{env.host.registry.address}"), 404, "no Refiner task")
    refused(env.client.get(f"/api/tasks/{STRANGER}"), 404, "no Refiner task")
    refused(env.client.get("/api/jobs/0123456789ab"), 404, "no job")
    refused(env.client.get("/api/jobs/not-a-job-id"), 422)
    refused(env.client.get("/api/mnist/-1"), 404, "0 to 9999")
    refused(env.client.get(f"/api/mnist/{10**30}"), 404, "0 to 9999")


def test_amounts(env: Env) -> None:
    task = env.task()
    fund = f"/api/tasks/{task}/fund"
    # more than a transaction can carry, more than the requester holds: were 500s
    refused(env.post(fund, account=env.requester, amount=2**300), 422, "2^256")
    r = env.post(fund, account=env.requester, amount="100000 ether")
    refused(r, 409, "requester holds", "not enough to pay 100000 ETH")
    # a budget the requester cannot pay is refused before anything is deployed (was a 500, deployed)
    before = len(env.client.get("/api/tasks").json())
    r = env.post("/api/tasks", account=env.requester, settings={**SETTINGS, "budget": "100000 ether"})
    refused(r, 409, "not enough to pay 100000 ETH")
    assert len(env.client.get("/api/tasks").json()) == before
    # unreadable amounts name the field
    refused(env.post(fund, account=env.requester, amount="-1 ether"), 422, "amount", "negative")
    refused(env.post(fund, account=env.requester, amount="abc"), 422, "amount", "cannot read 'abc'")
    refused(env.post(fund, account=env.requester, amount=0), 422, "amount", "more than 0")
    refused(env.post(fund, account=env.requester, amount="1e400 ether"), 422, "amount")
    funded = env.ok(fund, account=env.requester, amount="1 ether")["message"]
    assert "budget is now 3000000000000000000 wei" in funded


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"epsilon": 1e303}, ("epsilon", "too large")),  # ε × 10^6 overflows a float
        ({"aggregation": "fedprox", "mu": 1e303}, ("mu", "too large")),
        ({"epochs": 10**6}, ("epochs",)),  # refused by TaskSection (at most 100) before the web bound (50)
        ({"batch_size": 10**9}, ("batch_size",)),
        ({"data_format": "x" * 10_000}, ("data_format",)),
    ],
)
def test_task_settings_out_of_bounds(env: Env, change: dict[str, Any], words: tuple[str, ...]) -> None:
    r = env.post("/api/tasks", account=env.requester, settings={**SETTINGS, **change})
    refused(r, 422, *words)


def test_predict_takes_grey_levels(env: Env) -> None:
    digit = env.client.get("/api/mnist/0").json()
    assert len(digit["pixels"]) == 784 and min(digit["pixels"]) == 0 and max(digit["pixels"]) <= 1
    body = '{"pixels": [' + ", ".join(["NaN"] * 784) + "]}"
    r = env.client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert refused(r, 422, "finite number") and len(r.json()["detail"]) <= 10  # NaN echoed as text
    refused(env.post("/api/predict", pixels=[0.5] * 783 + [1.5]), 422, "less than or equal to 1")
    refused(env.post("/api/predict", pixels=[0.0] * 784, task=STRANGER), 404, "no Refiner task")


# ---------------------------------------------------------------------------------------------- roles


def test_an_account_without_a_key_here_is_refused(env: Env) -> None:
    task = env.task()
    base = f"/api/tasks/{task}"
    for step in ("open-recruitment", "sign-up", "claim-seat", "advance", "finalize-round", "evaluate"):
        refused(env.post(f"{base}/{step}", account=STRANGER), 403, "holds no key")
    refused(env.post(f"{base}/claim-reward", account=STRANGER, round=1), 403, "holds no key")
    refused(env.client.get(f"{base}/model", params={"account": STRANGER}), 403, "holds no key")
    refused(env.post("/api/tasks", account=STRANGER, settings=SETTINGS), 403, "holds no key")
    refused(env.client.get(f"/api/accounts/{STRANGER}"), 404, "holds no key")


def test_each_role_takes_only_its_own_steps(env: Env) -> None:
    task = env.task()
    base = f"/api/tasks/{task}"
    worker, validator = env.workers[0], env.validators[0]
    for step in ("open-recruitment", "close-recruitment", "start-round", "stop-training", "withdraw"):
        refused(env.post(f"{base}/{step}", account=worker), 403, "worker 1 is a worker", "for a requester")
    refused(env.post(f"{base}/fund", account=validator, amount="1 ether"), 403, "for a requester")
    refused(env.post("/api/tasks", account=worker, settings=SETTINGS), 403, "for a requester")
    refused(env.client.get(f"{base}/model", params={"account": worker}), 403, "for a requester")
    for step in ("claim-seat", "evaluate", "commit-manifest", "reveal-manifest"):
        refused(env.post(f"{base}/{step}", account=worker), 403, "for a validator")
    refused(env.post(f"{base}/sign-up", account=validator), 403, "for a worker")
    refused(env.post(f"{base}/train", account=env.requester), 403, "for a worker")
    refused(
        env.post(f"{base}/claim-reward", account=env.requester, round=1), 403, "only workers and validators"
    )


def test_another_requesters_task_cannot_be_driven(env: Env) -> None:
    other = demo_account("errors-other-requester")  # its key is not hosted here
    env.host.chain.fund(other.address, 10 * ETH)
    spec = TaskFile(task=TaskSection(**{**SETTINGS, "budget": 0}))
    stranger = Requester(other, env.host.chain, env.host.store, env.host.registry)
    task = stranger.create_task(
        spec.task_config("-"), spec.description(public_key_bytes(other).hex())
    ).address
    base = f"/api/tasks/{task}"
    assert env.client.get(base).json()["requester"] == other.address  # everybody may look
    for step in ("open-recruitment", "close-recruitment", "start-round", "stop-training", "withdraw"):
        refused(env.post(f"{base}/{step}", account=env.requester), 403, "not the requester")
    refused(env.post(f"{base}/fund", account=env.requester, amount="1 ether"), 403, "not the requester")
    refused(env.client.get(f"{base}/model", params={"account": env.requester}), 403, "not the requester")


# ---------------------------------------------------------------------------------------------- phases


def test_a_round_that_takes_more_than_the_budget_says_so(env: Env) -> None:
    def recruited(budget: str) -> str:
        task = env.task(budget=budget)
        env.ok(f"/api/tasks/{task}/open-recruitment", account=env.requester)
        env.ok(f"/api/tasks/{task}/sign-up", account=env.workers[0])
        for v in env.validators[:4]:
            env.ok(f"/api/tasks/{task}/claim-seat", account=v)
        env.ok(f"/api/tasks/{task}/close-recruitment", account=env.requester)
        return task

    short = recruited("0.5 ether")
    said = env.ok(f"/api/tasks/{short}/start-round", account=env.requester)["message"]
    assert said.endswith(
        "the budget held 0.5 ETH of the round's 1.3 ETH, so 0.8 ETH came from the requester's account"
    ), said
    full = recruited("1.3 ether")
    assert "came from" not in env.ok(f"/api/tasks/{full}/start-round", account=env.requester)["message"]


def test_a_round_refuses_steps_out_of_turn(env: Env) -> None:
    r, (w1, w2, w3) = env.requester, env.workers
    task = env.task()
    base = f"/api/tasks/{task}"
    # PENDING, recruitment not opened
    refused(env.post(f"{base}/start-round", account=r), 409, "after recruitment closed")
    refused(env.post(f"{base}/advance", account=r), 409, "PENDING", "no deadline")
    refused(env.post(f"{base}/finalize-round", account=r), 409, "REWARDING", "PENDING")
    refused(env.post(f"{base}/claim-reward", account=w1, round=1), 404, "no round 1")
    refused(env.post(f"{base}/open-recruitment", account=w1), 403)
    env.ok(f"{base}/open-recruitment", account=r)
    refused(env.post(f"{base}/open-recruitment", account=r), 409, "opened already")
    # RECRUITING: the last two validators stay off the committee
    for w in (w1, w2):
        env.ok(f"{base}/sign-up", account=w)
    refused(env.post(f"{base}/sign-up", account=w3), 409, "all the workers it takes")
    for v in env.validators[:4]:
        env.ok(f"{base}/claim-seat", account=v)
    committee = [m["address"] for m in env.client.get(base).json()["committee"]]
    assert committee, "sortition seated nobody"
    outsider = env.validators[-1]
    refused(env.post(f"{base}/claim-seat", account=committee[0]), 409, "already holds")
    env.ok(f"{base}/close-recruitment", account=r)
    env.ok(f"{base}/start-round", account=r)
    # TRAINING
    refused(env.post(f"{base}/evaluate", account=committee[0]), 409, "while EVALUATING", "is TRAINING")
    refused(env.post(f"{base}/commit-manifest", account=committee[0]), 409, "while EVALUATING")
    refused(env.post(f"{base}/train", account=w3), 403, "has not signed up")
    jobs = [env.ok(f"{base}/train", account=w, dataset=d)["job"] for w, d in ((w1, "good"), (w2, "bad"))]
    for job in jobs:
        env.wait(job)
    # EVALUATING
    refused(env.post(f"{base}/train", account=w1), 409, "while TRAINING", "is EVALUATING")
    refused(env.post(f"{base}/commit-manifest", account=committee[0]), 409, "evaluate first")
    refused(env.post(f"{base}/evaluate", account=outsider), 403, "not on this task's committee")
    refused(env.post(f"{base}/commit-manifest", account=outsider), 403, "not on this task's committee")
    jobs = [env.ok(f"{base}/evaluate", account=v)["job"] for v in committee]
    for job in jobs:
        env.wait(job)
    env.ok(f"{base}/commit-manifest", account=committee[0])
    # a second evaluation would make the committed manifest unrevealable (a lone member's commitment
    # has moved the task on to REVEALING: sortition seats one of the four in a few runs)
    again = "already committed" if len(committee) > 1 else "the task is REVEALING"
    refused(env.post(f"{base}/evaluate", account=committee[0]), 409, again)
    refused(env.post(f"{base}/commit-manifest", account=committee[0]), 409, again)
    if len(committee) > 1:
        refused(env.post(f"{base}/reveal-manifest", account=committee[0]), 409, "while REVEALING")
    for v in committee[1:]:
        env.ok(f"{base}/commit-manifest", account=v)
    # REVEALING
    refused(env.post(f"{base}/reveal-manifest", account=outsider), 403, "not on this task's committee")
    env.ok(f"{base}/reveal-manifest", account=committee[0])
    if len(committee) > 1:
        refused(env.post(f"{base}/reveal-manifest", account=committee[0]), 409, "already revealed")
        refused(env.post(f"{base}/claim-reward", account=w1, round=1), 409, "not settled")
    for v in committee[1:]:
        env.ok(f"{base}/reveal-manifest", account=v)
    # REWARDING
    refused(env.post(f"{base}/advance", account=r), 409, "REWARDING", "no deadline")
    env.ok(f"{base}/finalize-round", account=outsider)  # anybody may settle a round
    # settled: claims
    assert (
        "received 1000000000000000000 wei" in env.ok(f"{base}/claim-reward", account=w1, round=1)["message"]
    )
    refused(env.post(f"{base}/claim-reward", account=w1, round=1), 409, "already claimed")
    assert "earns nothing" in env.ok(f"{base}/claim-reward", account=w2, round=1)["message"]  # rejected
    refused(env.post(f"{base}/claim-reward", account=w3, round=1), 403, "submitted no update")
    refused(env.post(f"{base}/claim-reward", account=outsider, round=1), 403, "not on this task's committee")
    assert "received" in env.ok(f"{base}/claim-reward", account=committee[0], round=1)["message"]
    # a validator's claim pays every finalized round it agreed in: nothing is left for a second one
    refused(env.post(f"{base}/claim-reward", account=committee[0], round=1), 409, "no validator reward")
    refused(env.post(f"{base}/claim-reward", account=w1, round=2), 404, "no round 2")
    # the consensus model answers for the digits it is shown
    digits = [env.client.get(f"/api/mnist/{i}").json() for i in range(20)]
    guesses = [env.ok("/api/predict", pixels=d["pixels"], task=task) for d in digits]
    assert all(math.isclose(sum(g["probabilities"]), 1, abs_tol=1e-4) for g in guesses)
    assert sum(g["prediction"] == d["label"] for g, d in zip(guesses, digits, strict=True)) >= 14
    model = env.client.get(f"{base}/model", params={"account": r})
    assert model.headers["content-type"] == "application/octet-stream"
    header = int.from_bytes(model.content[:8], "little")
    assert "fc.weight" in json.loads(model.content[8 : 8 + header])  # safetensors of the logistic model


def test_one_job_at_a_time_per_account(env: Env) -> None:
    task, _ = env.training_task()
    w1 = env.workers[0]
    busy = Job("0123456789ab", "train", w1, task)  # as if it were still training elsewhere
    env.host.jobs[busy.id] = busy
    try:
        refused(env.post(f"/api/tasks/{task}/train", account=w1), 409, "worker 1 is still busy", busy.id)
    finally:
        busy.state = "done"
    env.wait(env.ok(f"/api/tasks/{task}/train", account=w1)["job"])


def test_unexpected_errors_are_500s_not_4xx(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the errors a user can cause become 4xx: a bug (a KeyError, a bare RuntimeError) is a 500."""
    task = env.task()
    for bug in (RuntimeError("a bug"), KeyError("a bug"), ValueError("a bug")):

        def broken(*args: Any, exc: Exception = bug) -> Any:
            raise exc

        monkeypatch.setattr(services, "open_recruitment", broken)
        r = env.post(f"/api/tasks/{task}/open-recruitment", account=env.requester)
        assert r.status_code == 500 and "internal error" in r.json()["detail"], r.text


# ---------------------------------------------------------------------------------------------- auto mode


@pytest.fixture(scope="module")
def auto_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A host of its own: auto mode sets the agents loose on every task the host holds."""
    host = Host.build_demo(tmp_path_factory.mktemp("auto"), workers=3, validators=4, shard=300)
    app = create_app(host)
    with page_client(app) as client:
        yield _env(host, client)
        app.state.pilot.stop()


def test_auto_mode_runs_a_round_and_refuses_manual_steps(auto_env: Env) -> None:
    env, r = auto_env, auto_env.requester
    task = env.task()
    base = f"/api/tasks/{task}"
    assert env.ok("/api/mode", mode="auto")["mode"] == "auto"
    assert env.client.get("/api/session").json()["mode"] == "auto"
    refused(env.post(f"{base}/open-recruitment", account=r), 409, "auto mode is on")
    refused(env.post("/api/tasks", account=r, settings=SETTINGS), 409, "auto mode is on")
    refused(env.post(f"{base}/train", account=env.workers[0]), 409, "auto mode is on")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rounds = env.client.get(base).json()["rounds"]
        if rounds and rounds[0]["finalized"] and rounds[0]["consensus"]:  # settled with consensus
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no consensus in auto mode within 120 s: {env.client.get(base).json()}")
    # the second worker trains on shuffled labels, as in the paper's demo
    assert rounds[0]["accepted"] == [env.workers[0]] and rounds[0]["rejected"] == [env.workers[1]]
    assert env.ok("/api/mode", mode="manual")["mode"] == "manual"
    assert not env.client.app.state.pilot.running  # type: ignore[attr-defined]
    assert env.client.get("/api/session").json()["mode"] == "manual"
    env.ok(f"{base}/fund", account=r, amount="1 ether")  # manual steps are taken again
