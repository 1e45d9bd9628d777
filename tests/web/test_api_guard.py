"""Only the page the server handed out drives it: a rebound name (evil.example resolving to 127.0.0.1)
is refused whatever it asks, and a state-changing call without the session's token (a cross-site form
post, a fetch from another origin) is refused with a 403 and changes nothing on chain."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from refiner.cli import app
from refiner.cli.serve_cmd import served_names
from refiner.web import services
from refiner.web.api import create_app
from refiner.web.guard import TOKEN_HEADER
from refiner.web.host import Host
from tests.web.client import ORIGIN, page_client, page_token

SETTINGS = {
    "model": "logistic",
    "max_rounds": 1,
    "max_workers": 1,
    "committee_size": 2,
    "worker_reward": "1 ether",
    "validator_reward": "0.3 ether",
    "budget": "2 ether",
}


@dataclass
class Env:
    host: Host
    client: TestClient  # the page's: loopback Host, the token
    requester: str
    task: str  # one the requester created with the token

    def chain_state(self) -> tuple[int, int, int, bool]:
        """Tasks registered, the task's budget, the requester's balance, auto mode."""
        host = self.host
        budget = services.task_of(host, self.task).budget()
        balance = host.chain.w3.eth.get_balance(host.hosted(self.requester).account.address)
        return len(host.registered_tasks()), budget, balance, self.client.app.state.pilot.running  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    host = Host.build_demo(tmp_path_factory.mktemp("guard"), workers=1, validators=1, shard=100)
    with page_client(create_app(host)) as client:
        requester = next(a for a, h in host.accounts.items() if h.role == "requester")
        r = client.post("/api/tasks", json={"account": requester, "settings": SETTINGS})
        assert r.status_code == 201, r.text
        yield Env(host, client, requester, r.json()["address"])


def stranger(env: Env, host: str, token: str | None = None) -> TestClient:
    """A client that reaches the server under `host`, with `token` (none by default)."""
    client = TestClient(env.client.app, base_url=f"http://{host}")
    if token is not None:
        client.headers[TOKEN_HEADER] = token
    return client


def test_a_rebound_name_is_refused(env: Env) -> None:
    token = env.client.headers[TOKEN_HEADER]
    before = env.chain_state()
    for name in ("evil.example:8000", "evil.example", "127.0.0.1.evil.example:8000", "localhost.evil:80"):
        evil = stranger(env, name, token)  # even a page that somehow had the token
        for r in (
            evil.get("/"),
            evil.get("/api/session"),
            evil.get("/openapi.json"),
            evil.post("/api/tasks", json={"account": env.requester, "settings": SETTINGS}),
            evil.post(f"/api/tasks/{env.task}/fund", json={"account": env.requester, "amount": "1 ether"}),
            evil.post("/api/mode", json={"mode": "auto"}),
        ):
            assert r.status_code == 400, (name, r.request.method, r.request.url, r.text)
            assert "refiner-token" not in r.text and token not in r.text
    assert env.chain_state() == before


def test_loopback_names_are_served(env: Env) -> None:
    for name in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST:1234", "127.0.0.1"):
        r = stranger(env, name).get("/api/session")
        assert r.status_code == 200, (name, r.text)


def test_the_page_carries_the_token_and_is_not_cached(env: Env) -> None:
    r = env.client.get("/")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = page_token(r.text)
    assert token == env.client.headers[TOKEN_HEADER] and len(token) >= 40
    other = create_app(env.host)  # every server start makes its own
    assert page_token(TestClient(other, base_url=ORIGIN).get("/").text) != token


@pytest.mark.parametrize("token", [None, b"", b"wrong", b"x" * 43, "é".encode(), b"\xff"])
def test_a_state_changing_call_without_the_token_is_refused(env: Env, token: bytes | None) -> None:
    page = env.client.headers[TOKEN_HEADER]
    client = stranger(env, "127.0.0.1:8000")
    if token is not None:
        client.headers.update({TOKEN_HEADER.encode(): token})  # bytes: sent as they are
    wrong_token = page[:-1] + ("A" if page[-1] != "A" else "B")
    before = env.chain_state()
    create = {"account": env.requester, "settings": SETTINGS}
    for r in (
        client.post("/api/tasks", json=create),
        client.post(f"/api/tasks/{env.task}/fund", json={"account": env.requester, "amount": "1 ether"}),
        client.post(f"/api/tasks/{env.task}/withdraw", json={"account": env.requester}),
        client.post("/api/mode", json={"mode": "auto"}),
        client.put("/api/tasks", json=create),
        client.delete(f"/api/tasks/{env.task}"),
        client.patch(f"/api/tasks/{env.task}"),
        # what a cross-site <form> can send: no custom header, a "simple" content type
        client.post("/api/tasks", content=b'{"account": "x"}', headers={"content-type": "text/plain"}),
        client.post("/api/mode", data={"mode": "auto"}),
        # a token sent some other way than the header
        client.post(f"/api/tasks?token={page}", json=create),
        stranger(env, "127.0.0.1:8000", page.lower() if page.lower() != page else page.upper()).post(
            "/api/tasks", json=create
        ),
        stranger(env, "127.0.0.1:8000", wrong_token).post("/api/tasks", json=create),
    ):
        assert r.status_code == 403, (r.request.method, r.request.url, r.text)
        detail = r.json()["detail"]
        assert TOKEN_HEADER in detail and "\n" not in detail and page not in detail
    assert env.chain_state() == before


def test_the_token_makes_it_work(env: Env) -> None:
    tasks, budget, _, _ = env.chain_state()
    r = env.client.post("/api/tasks", json={"account": env.requester, "settings": SETTINGS})
    assert r.status_code == 201, r.text
    r = env.client.post(f"/api/tasks/{env.task}/fund", json={"account": env.requester, "amount": "1 ether"})
    assert r.status_code == 200, r.text
    after = env.chain_state()
    assert after[:2] == (tasks + 1, budget + 10**18)


def test_reads_need_no_token_and_no_origin_may_read(env: Env) -> None:
    client = stranger(env, "127.0.0.1:8000")
    assert client.get(f"/api/tasks/{env.task}").status_code == 200
    # no CORS: a page from another origin gets no leave to read a response or to send a preflighted call
    for origin in ("http://evil.example", "http://localhost:9999", "null"):
        r = client.get("/api/session", headers={"Origin": origin})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        r = client.options(
            "/api/tasks",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": f"content-type,{TOKEN_HEADER}",
            },
        )
        assert not any(h.startswith("access-control-") for h in r.headers), r.headers


def test_serve_answers_to_loopback_and_the_bound_address_only() -> None:
    assert served_names("127.0.0.1", []) == ["127.0.0.1", "localhost", "[::1]"]
    assert served_names("0.0.0.0", []) == ["127.0.0.1", "localhost", "[::1]"]
    assert served_names("192.168.1.5", ["Refiner.lan"]) == [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "refiner.lan",
        "192.168.1.5",
    ]
    assert served_names("fe80::1", []) == ["127.0.0.1", "localhost", "[::1]", "[fe80::1]"]


def test_the_api_page_loads_nothing_from_another_site(env: Env) -> None:
    page = env.client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    external = re.findall(r"""(?:src|href)=["']?(https?://[^"' >]+)""", page.text)
    assert external == [], external  # FastAPI's default page takes Swagger UI from a CDN
    for asset in re.findall(r"""["'](/(?:vendor|static)/[^"']+)["']""", page.text):
        assert env.client.get(asset).status_code == 200, asset
    assert env.client.get("/redoc").status_code == 404
    assert env.client.get("/openapi.json").json()["info"]["title"] == "Refiner"
    index = env.client.get("/").text
    assert not re.findall(r"""(?:src|href)=["']?https?://""", index)


def test_serve_on_a_busy_port_says_so_before_setting_anything_up(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = tmp_path / "serve"
        result = CliRunner().invoke(app, ["serve", "--demo", "--port", str(port), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: port {port} on 127.0.0.1 is already in use (another server?): pass --port with a free one"
    )
    assert not out.exists()  # nothing was set up
