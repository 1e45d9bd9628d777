"""`refiner chain …`, `refiner account …`, `refiner admin …`: a node, keys and the registry."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from refiner.cli.context import (
    ChainOpt,
    ConfigOpt,
    Ctx,
    KeystoreOpt,
    WeiOpt,
    fail,
    funds,
    out,
    password,
    user_errors,
)
from refiner.config import parse_address, parse_seconds, parse_wei

chain_app = typer.Typer(help="A local dev chain (anvil) for trying Refiner; any JSON-RPC node works too.")
account_app = typer.Typer(help="Encrypted keys: every participant acts with its own Ethereum account.")
admin_app = typer.Typer(help="The administrator: deploys the registry (paper 2.1).")


@chain_app.command("up")
def chain_up(
    port: Annotated[int, typer.Option(help="TCP port on 127.0.0.1")] = 8545,
    state: Annotated[
        Path | None, typer.Option(help="load the chain from this file and save it on exit")
    ] = None,
    block_time: Annotated[
        float, typer.Option(help="seconds between blocks, as on a real chain (0: a block per transaction)")
    ] = 1.0,
) -> None:
    """Run anvil (npm @foundry-rs/anvil, pinned) on 127.0.0.1 until interrupted; with --state the chain
    survives restarts."""
    from refiner.chain.anvil import start_anvil

    with user_errors():
        node = start_anvil(port, state, block_time or None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    out.print(f"anvil listening on {node.url}" + (f" (state in {state})" if state else ""), soft_wrap=True)
    try:
        while not stop.wait(0.5):
            if not node.running:
                fail(f"anvil exited:\n{node.output()[-2000:]}")
    finally:
        node.stop()
        out.print("anvil stopped" + (f"; state saved to {state}" if state else ""))


@chain_app.command("wait")
def chain_wait(
    timeout: Annotated[float, typer.Option(help="seconds to wait at most")] = 60.0,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
) -> None:
    """Wait until the chain's node answers (after `refiner chain up &`, before the first command)."""
    import time

    from refiner.chain import Chain, ChainError

    ctx = Ctx.load(config, chain)
    deadline = time.monotonic() + timeout
    while True:
        try:
            Chain.connect(ctx.settings.chain)
            break
        except (ChainError, OSError) as exc:
            if time.monotonic() > deadline:
                fail(f"{exc} after {timeout:g} s")
            time.sleep(0.2)
    out.print(f"{ctx.settings.chain} answers")


@chain_app.command("fund")
def chain_fund(
    address: Annotated[str, typer.Argument(help="account to fund")],
    amount: Annotated[str, typer.Option(help="e.g. '100 ether'")] = "100 ether",
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    wei: WeiOpt = False,
) -> None:
    """Give an account Ether from a dev chain's unlocked faucet account (anvil or embedded only)."""
    ctx = Ctx.load(config, chain)
    with user_errors():
        value, address = parse_wei(amount), parse_address(address)
        ctx.chain.fund(address, value)
        balance = ctx.chain.w3.eth.get_balance(ctx.chain.w3.to_checksum_address(address))
    out.print(f"{address} now holds {funds(balance, wei)}")


@account_app.command("new")
def account_new(
    keystore: Annotated[Path, typer.Option("--keystore", help="where to write the encrypted key")],
    password_env: Annotated[
        str, typer.Option(help="environment variable holding the password")
    ] = "REFINER_PASSWORD",
) -> None:
    """Create a key and write it encrypted (scrypt); prints the address."""
    from eth_account import Account

    from refiner.chain.accounts import save_keystore

    if keystore.exists():
        fail(f"{keystore} exists; refusing to overwrite a key")
    account = Account.create()
    with user_errors():
        save_keystore(account, keystore, password(password_env))
    out.print(account.address)


@account_app.command("show")
def account_show(
    config: ConfigOpt = None, keystore: KeystoreOpt = None, chain: ChainOpt = None, wei: WeiOpt = False
) -> None:
    """Address, public key and balance of the keystore's account."""
    from refiner.chain import public_key_bytes

    ctx = Ctx.load(config, chain, keystore=keystore)
    account = ctx.account
    out.print(f"address     {account.address}\npublic key  {public_key_bytes(account).hex()}")
    with user_errors():
        out.print(f"balance     {funds(ctx.chain.w3.eth.get_balance(account.address), wei)}")


@admin_app.command("deploy-registry")
def deploy_registry(
    min_stake: Annotated[str, typer.Option(help="smallest validator stake")] = "1 ether",
    stake_unit: Annotated[
        str, typer.Option(help="stake per sortition unit (finer → fairer, dearer)")
    ] = "0.1 ether",
    unbonding_delay: Annotated[str, typer.Option(help="wait before unbonded stake can be withdrawn")] = "7d",
    epoch_length: Annotated[
        int,
        typer.Option(
            help="blocks per sortition epoch: tasks opening in one epoch share the next one's committee, "
            "so a requester can re-draw it once per epoch (take hours of blocks on a public chain)",
            min=1,
        ),
    ] = 16,  # refiner.chain.registry.DEFAULT_EPOCH_LENGTH (not imported: the CLI starts without web3)
    max_seat_lock: Annotated[
        str, typer.Option(help="longest a committee seat locks a validator's stake (≤ 365d)")
    ] = "30d",
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    keystore: KeystoreOpt = None,
) -> None:
    """Deploy the sortition contract and the registry (approving this build's task code); prints the
    registry's address, which every participant then passes as --registry."""
    from refiner.roles import Administrator

    ctx = Ctx.load(config, chain, keystore=keystore)
    with user_errors():
        registry = Administrator.deploy_registry(
            ctx.chain,
            ctx.account,
            min_stake=parse_wei(min_stake),
            unbonding_delay=parse_seconds(unbonding_delay),
            stake_unit=parse_wei(stake_unit),
            epoch_length=epoch_length,
            max_seat_lock=parse_seconds(max_seat_lock),
        )
    out.print(registry.address)
