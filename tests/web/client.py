"""A test client that talks to the server as the page does: under a loopback Host, with the session
token read from the served index.html."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from starlette.types import ASGIApp

from refiner.web.guard import TOKEN_HEADER

HOST = "127.0.0.1:8000"
ORIGIN = f"http://{HOST}"


def page_token(html: str) -> str:
    found = re.search(r'<meta name="refiner-token" content="([^"]+)">', html)
    assert found, "the page carries no token"
    return found[1]


def page_client(app: ASGIApp, **kwargs: Any) -> TestClient:
    """A TestClient (use it as a context manager) that sends the page's token with every request."""
    client = TestClient(app, base_url=ORIGIN, **kwargs)
    client.headers[TOKEN_HEADER] = page_token(client.get("/").text)
    return client
