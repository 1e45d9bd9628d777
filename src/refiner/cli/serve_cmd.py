"""`refiner serve`: the web interface."""

from __future__ import annotations

import errno
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from refiner.cli.context import fail, out


def serve(
    demo: Annotated[
        bool, typer.Option(help="host the demo's participants in the server (embedded chain)")
    ] = False,
    host: Annotated[
        str, typer.Option(help="interface to bind (loopback unless you mean otherwise)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="demo workers")] = 5,
    validators: Annotated[
        int, typer.Option(help="demo validators (stakes 1–2.5 ETH; τ is set per task)")
    ] = 10,
    shard: Annotated[int, typer.Option(help="MNIST images per demo worker")] = 3000,
    out_dir: Annotated[Path | None, typer.Option("--out", help="where the demo keeps its store")] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="a further Host name the server answers to (besides 127.0.0.1, localhost, [::1] and the "
            "--host address); every other name is refused, against DNS rebinding"
        ),
    ] = None,
) -> None:
    """Serve the panels (task configuration and management, task board, training, evaluation, results,
    try the model) and their JSON API; open the printed URL in a browser."""
    import uvicorn

    from refiner.web.api import create_app
    from refiner.web.guard import TOKEN_HEADER, new_token
    from refiner.web.host import Host

    if not demo:
        fail("only --demo is supported for now: the server hosts the demo's participants")
    listening = bind(host, port)  # a busy port is said before anything is set up or announced
    directory = out_dir or Path(tempfile.mkdtemp(prefix="refiner-serve-"))
    try:
        out.print(f"setting up the demo: registry, 1 requester, {workers} workers, {validators} validators…")
        token = new_token()
        app = create_app(
            Host.build_demo(directory, workers=workers, validators=validators, shard=shard),
            token=token,
            hosts=served_names(host, allow_host or []),
        )
        out.print(f"Refiner is at [bold]http://{host}:{port}/[/] (API docs at /docs); Ctrl-C stops it")
        out.print(f"API calls that change state take the header {TOKEN_HEADER}: {token}")
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    finally:
        listening.close()
        if out_dir is None:  # the demo's own temporary store goes with the server
            shutil.rmtree(directory, ignore_errors=True)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port), or one error line saying why there is none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}: {exc.strerror}")
    family, kind, proto, _, address = infos[0]
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
        listening.listen(128)
    except OSError as exc:
        listening.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is already in use (another server?): pass --port with a free one")
        fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    return listening


def served_names(bound: str, extra: list[str]) -> list[str]:
    """The Host names served: the loopback ones, the bound address unless it is a wildcard, `extra`."""
    from refiner.web.guard import LOOPBACK

    names = [*LOOPBACK, *extra]
    if bound not in ("0.0.0.0", "::", ""):
        names.append(f"[{bound}]" if ":" in bound else bound)
    return list(dict.fromkeys(n.lower() for n in names))
