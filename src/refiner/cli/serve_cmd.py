"""`refiner serve`: the web interface."""

from __future__ import annotations

import errno
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from refiner.cli.context import (
    ChainOpt,
    ConfigOpt,
    Ctx,
    KeystoreOpt,
    RegistryOpt,
    StorageOpt,
    fail,
    out,
    setup_logging,
    user_errors,
)

if TYPE_CHECKING:
    from refiner.web.host import Host

ROLES = ("requester", "worker", "validator")


def serve(
    demo: Annotated[
        bool, typer.Option(help="host the demo's participants in the server (embedded chain)")
    ] = False,
    role: Annotated[
        str | None,
        typer.Option(help="without --demo: the role your account plays here (requester, worker, validator)"),
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="a worker's private data (safetensors, `refiner data mnist`)")
    ] = None,
    validation: Annotated[
        Path | None,
        typer.Option(help="a requester's validation data, shared with each round's committee (safetensors)"),
    ] = None,
    stake: Annotated[str, typer.Option(help="a validator's stake, bonded if it is not registered yet")] = (
        "1 ether"
    ),
    task: Annotated[
        str | None, typer.Option("--task", help="auto mode follows only this task (default: every task)")
    ] = None,
    min_workers: Annotated[
        int, typer.Option(help="auto mode: a requester closes recruitment once this many workers signed up")
    ] = 0,
    min_seats: Annotated[
        int, typer.Option(help="... and this many committee seats are claimed (0: wait for the deadline)")
    ] = 0,
    seed: Annotated[int, typer.Option(help="a worker's seed of local training")] = 0,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
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
    try the model) and their JSON API; open the printed URL in a browser.

    With --demo the server hosts the demo's participants on an embedded chain. Without it, it is your
    own participant's: --role with your --keystore on your --chain and --storage (defaults from
    refiner.toml), acting by your clicks or, in auto mode, as `refiner worker run` (and the like) would.
    The keystore's password is asked here, once, and never reaches the page."""
    if demo:
        if role is not None:
            fail("--role is for your own account; --demo hosts the demo's participants")
        listening = bind(host, port)  # a busy port is said before anything is set up or announced
        directory = out_dir or Path(tempfile.mkdtemp(prefix="refiner-serve-"))
        try:
            out.print(
                f"setting up the demo: registry, 1 requester, {workers} workers, {validators} validators…"
            )
            from refiner.web.host import Host

            run(
                Host.build_demo(directory, workers=workers, validators=validators, shard=shard),
                host,
                port,
                listening,
                allow_host or [],
            )
        finally:
            listening.close()
            if out_dir is None:  # the demo's own temporary store goes with the server
                shutil.rmtree(directory, ignore_errors=True)
        return
    if role not in ROLES:
        fail("pass --role requester, worker or validator (your account's role), or --demo for the demo")
    if role == "worker" and data is None:
        fail("a worker trains on its private data: pass --data FILE (`refiner data mnist` writes some)")
    if role == "requester" and validation is None:
        fail("a requester shares its validation data each round: pass --validation FILE")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    listening = bind(host, port)
    try:
        served = own_host(ctx, role, data, validation, stake, task, min_workers, min_seats, seed)
        address = next(iter(served.accounts))
        out.print(
            f"serving the {role} {address} on {ctx.settings.chain} (registry {served.registry.address})"
        )
        run(served, host, port, listening, allow_host or [])
    finally:
        listening.close()
        ctx.close()


def own_host(
    ctx: Ctx,
    role: str,
    data: Path | None,
    validation: Path | None,
    stake: str,
    task: str | None,
    min_workers: int,
    min_seats: int,
    seed: int,
) -> Host:
    """The server's one participant: the keystore's account (its password asked now) in `role`."""
    from refiner.cli.agent_cmds import terms_of
    from refiner.cli.requester_cmds import _load_dataset
    from refiner.config import parse_address, parse_wei
    from refiner.web.host import AgentOptions, Host

    setup_logging("INFO", "serve")
    with user_errors():
        wei = parse_wei(stake)
        only = parse_address(task) if task else None
    account, registry, store = ctx.account, ctx.registry, ctx.store  # the password prompt comes first
    options = AgentOptions(only, terms_of(ctx), min_workers, min_seats, wei)
    with user_errors():
        return Host.for_account(
            registry,
            store,
            account,
            role,  # type: ignore[arg-type]
            data=_load_dataset(data) if data else None,
            validation=_load_dataset(validation) if validation else None,
            options=options,
            models=ctx.models,
            seed=seed,
        )


def run(served: Host, host: str, port: int, listening: socket.socket, allow_host: list[str]) -> None:
    import uvicorn

    from refiner.web.api import create_app
    from refiner.web.guard import TOKEN_HEADER, new_token

    token = new_token()
    app = create_app(served, token=token, hosts=served_names(host, allow_host))
    out.print(f"Refiner is at [bold]http://{host}:{port}/[/] (API docs at /docs); Ctrl-C stops it")
    out.print(f"API calls that change state take the header {TOKEN_HEADER}: {token}")
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listening])
    finally:
        app.state.pilot.stop()


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
