"""Who may talk to the server: a loopback `Host` and, for every state-changing call, the session token.

The server holds keys that move Ether, so a web page the user happens to visit must not drive it:

- DNS rebinding: a page on evil.example whose name is re-pointed at 127.0.0.1 is same-origin with the
  server as far as the browser knows, so it could read the pages (the token included) and call the
  API. Its requests still say ``Host: evil.example:PORT``, and only loopback names are served (Starlette's
  `TrustedHostMiddleware`, 400 otherwise).
- Cross-site requests: any other page can make the browser send a request with the right `Host` (a
  form post, a no-cors fetch), but cannot read this server's responses (no CORS header is ever sent),
  so it never learns the token that `index.html` carries in ``<meta name="refiner-token">``; every
  POST, PUT, PATCH or DELETE without it gets a 403.

The token is made per server start with `secrets` and compared in constant time.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: The Host names a browser on this machine uses for a loopback server (any port).
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
TOKEN_HEADER = "X-Refiner-Token"
TOKEN_META = "refiner-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SessionToken:
    """Refuses (403, JSON detail) a state-changing request that lacks the session's token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            sent = Headers(scope=scope).get(TOKEN_HEADER)
            if sent is None or not secrets.compare_digest(sent.encode("latin-1"), self.token):
                detail = f"missing or wrong {TOKEN_HEADER} header: reload the page from the server"
                await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def protect(app: Starlette, token: str, hosts: Sequence[str] = LOOPBACK) -> None:
    """Put `app` behind the Host check (outermost: a rebound name learns nothing) and the token check."""
    app.add_middleware(SessionToken, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
