"""Schemathesis fuzzes every operation of the JSON API against one small demo host: no request gets a
5xx, every response matches its declared schema (status code, content type, body), invalid input is
refused with a 4xx, and every 4xx says what is wrong (one sentence, or FastAPI's list of field errors).

Each operation gets valid and invalid requests (schemathesis' positive and negative modes). Random
strings rarely name a task or an account this server holds, so most valid requests are steered (through
Hypothesis, so that failures still shrink) to real ones: hosted accounts of every role, tasks in every
phase (one with a round that reached consensus, so model downloads and predictions are reached, one with
updates waiting to be evaluated), real job ids, rounds that exist, amounts worth reading. Auto mode is
never switched on here (it would set the agents loose on every task); `test_api_errors` covers it.

`schemathesis.pytest.from_fixture` needs pytest < 9 (it sets `Node._nodeid`), so the operations'
strategies are driven with Hypothesis directly, one subtest per operation and mode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from refiner.web.api import create_app
from refiner.web.guard import TOKEN_HEADER
from refiner.web.host import Host
from refiner.web.schemas import BUILTIN_MODELS
from tests.web.client import HOST, ORIGIN, page_client

SETTINGS = {
    "model": "logistic",
    "lr": 0.05,
    "max_rounds": 3,
    "max_workers": 2,
    "committee_size": 8,  # expected seats: with τ = 3, sortition seats nobody about once in 20 draws
    "epsilon": 1.5,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "2 ether",
}


@dataclass
class Cast:
    host: Host
    client: TestClient
    requester: str
    accounts: list[str]
    tasks: list[str]  # pending, recruiting, training, evaluating, and one whose first round reached consensus
    jobs: list[str]

    @property
    def token_header(self) -> dict[str, str]:
        return {TOKEN_HEADER: self.client.headers[TOKEN_HEADER]}


def _post(client: TestClient, path: str, **body: Any) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def _wait(client: TestClient, job: str) -> dict[str, Any]:
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] != "running":
            assert state["state"] == "done", state
            return state  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def _recruit(client: TestClient, requester: str, workers: list[str], validators: list[str]) -> str:
    task: str = _post(client, "/api/tasks", account=requester, settings=SETTINGS)["address"]
    _post(client, f"/api/tasks/{task}/open-recruitment", account=requester)
    for w in workers[:2]:
        _post(client, f"/api/tasks/{task}/sign-up", account=w)
    for v in validators:
        _post(client, f"/api/tasks/{task}/claim-seat", account=v)
    _post(client, f"/api/tasks/{task}/close-recruitment", account=requester)
    _post(client, f"/api/tasks/{task}/start-round", account=requester)
    return task


@pytest.fixture(scope="module")
def cast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cast]:
    host = Host.build_demo(tmp_path_factory.mktemp("fuzz"), workers=3, validators=4, shard=300)
    app = create_app(host)
    with page_client(app) as client:
        session = client.get("/api/session").json()["accounts"]
        by_role = {
            r: [a["address"] for a in session if a["role"] == r] for r in ("requester", "worker", "validator")
        }
        requester, workers, validators = by_role["requester"][0], by_role["worker"], by_role["validator"]
        # a task through one round with consensus
        done = _recruit(client, requester, workers, validators)
        jobs = [_post(client, f"/api/tasks/{done}/train", account=w)["job"] for w in workers[:2]]
        for j in jobs:
            _wait(client, j)
        seated = [m["address"] for m in client.get(f"/api/tasks/{done}").json()["committee"]]
        jobs += [_post(client, f"/api/tasks/{done}/evaluate", account=v)["job"] for v in seated]
        for j in jobs[-len(seated) :]:
            _wait(client, j)
        for step in ("commit-manifest", "reveal-manifest"):
            for v in seated:
                _post(client, f"/api/tasks/{done}/{step}", account=v)
        _post(client, f"/api/tasks/{done}/finalize-round", account=requester)
        training = _recruit(client, requester, workers, validators)
        evaluating = _recruit(client, requester, workers, validators)
        jobs += [_post(client, f"/api/tasks/{evaluating}/train", account=w)["job"] for w in workers[:2]]
        for j in jobs[-2:]:
            _wait(client, j)
        recruiting = _post(client, "/api/tasks", account=requester, settings=SETTINGS)["address"]
        _post(client, f"/api/tasks/{recruiting}/open-recruitment", account=requester)
        pending = _post(client, "/api/tasks", account=requester, settings=SETTINGS)["address"]
        tasks = [pending, recruiting, training, evaluating, done]
        yield Cast(host, client, requester, list(host.accounts), tasks, jobs)
        # let the jobs the fuzzing started end before the host goes away
        deadline = time.monotonic() + 60
        while any(j.state == "running" for j in host.jobs.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        app.state.pilot.stop()


def clear_error(ctx: Any, response: schemathesis.Response, case: Case[Any]) -> None:
    """Every 4xx says what is wrong: one sentence in `detail`, or FastAPI's list of field errors."""
    if not 400 <= response.status_code < 500:
        return
    detail = response.json().get("detail")
    if isinstance(detail, list):
        assert detail and all(isinstance(e, dict) and e.get("msg") and "loc" in e for e in detail), detail
    else:
        assert isinstance(detail, str) and detail.strip(), f"no message in {response.text!r}"
        assert "\n" not in detail and len(detail) < 300, f"not one clear sentence: {detail!r}"
        assert not detail.startswith("internal error"), detail


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    clear_error,
]


AMOUNTS = ["1 ether", "0.5 ether", "2000 gwei", 10**18, 0, "0 wei", "-1 ether", "abc", "1e400 ether", 2**300]


def steer(case: Case[Any], data: st.DataObject, cast: Cast) -> None:
    """Point most valid requests at what exists: hosted accounts of every role, the real tasks, jobs and
    rounds, amounts worth reading (the random value the schema allows stays one of the choices)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return

    def pick(current: Any, real: list[Any]) -> Any:
        return data.draw(st.sampled_from([*real, current]))

    path = case.path_parameters or {}
    if "task" in path:
        path["task"] = pick(path["task"], cast.tasks)
    if "address" in path:
        path["address"] = pick(path["address"], cast.accounts)
    if "job_id" in path:
        path["job_id"] = pick(path["job_id"], cast.jobs)
    if isinstance(case.query, dict) and "account" in case.query:
        case.query["account"] = pick(case.query["account"], [cast.requester, *cast.accounts])
    body = case.body
    if not isinstance(body, dict):
        return
    settings_ = body.get("settings")
    if "account" in body:
        # a third of the steps are the requester's: ask as it more often
        body["account"] = pick(body["account"], [*[cast.requester] * 3, *cast.accounts])
    if "amount" in body:
        body["amount"] = pick(body["amount"], AMOUNTS)
    if isinstance(body.get("round"), int):
        body["round"] = pick(body["round"], [1, 2])
    if isinstance(body.get("task"), str):
        body["task"] = pick(body["task"], cast.tasks)
    if isinstance(settings_, dict):  # a model the web accepts, so that random settings reach the chain
        settings_["model"] = pick(settings_.get("model", "small_cnn"), list(BUILTIN_MODELS))
    if body.get("mode") == "auto":
        body["mode"] = "manual"  # auto mode would set the agents loose on every task


LAST = ("/stop-training", "/advance", "/withdraw")
OPERATIONS = 27  # the API's operations: every one must be fuzzed
MAX_EXAMPLES = 25  # per operation and mode (valid, invalid)


def test_fuzz_every_operation(cast: Cast, subtests: pytest.Subtests) -> None:
    # as the page: a loopback Host, the session's token (`test_api_guard` covers requests without them)
    schema = schemathesis.openapi.from_asgi("/openapi.json", cast.client.app, headers={"Host": HOST})
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == OPERATIONS, [op.label for op in operations]
    # the steps that end tasks or jump the chain's clock go last, so that the others meet tasks alive
    operations.sort(key=lambda op: op.path.endswith(LAST))
    for operation in operations:
        raw = operation.definition.raw
        takes_input = bool(raw.get("parameters") or raw.get("requestBody"))
        modes = (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
        )
        for mode in modes:
            with subtests.test(msg=f"{operation.label} ({mode.value})"):
                _fuzz(operation, mode, cast)


def _fuzz(operation: Any, mode: GenerationMode, cast: Cast) -> None:
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def fuzz(case: Case[Any], data: st.DataObject) -> None:
        steer(case, data, cast)
        response = case.call_and_validate(base_url=ORIGIN, headers=cast.token_header, checks=CHECKS)
        assert TOKEN_HEADER.encode() not in response.content, "a call lacked the token"
        assert not cast.client.app.state.pilot.running  # type: ignore[attr-defined]

    fuzz()
