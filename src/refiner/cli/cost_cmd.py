"""`refiner cost`: what a task will cost the requester, a worker and a validator, before it is posted."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from refiner.cli.context import ConfigOpt, Ctx, fail, funds, out, user_errors

#: Gas prices a reader compares by default: an L1-like and an L2-like one (gwei).
DEFAULT_PRICES = ("20", "0.01")


def cost(
    task_file: Annotated[Path, typer.Argument(help="TOML task configuration (as for create-task)")],
    workers: Annotated[int | None, typer.Option(help="workers that take part (default: max_workers)")] = None,
    rounds: Annotated[int | None, typer.Option(help="rounds played (default: max_rounds)")] = None,
    gas_price: Annotated[
        list[str] | None,
        typer.Option(help="gas price in gwei (repeatable; default 20, L1-like, and 0.01, L2-like)"),
    ] = None,
    wei: Annotated[bool, typer.Option("--wei", help="amounts as exact wei instead of ETH")] = False,
    config: ConfigOpt = None,
) -> None:
    """Gas and Ether the task costs each participant, from the gas its own calls take: the task is
    deployed on an embedded chain and one round played with stand-in files (a few seconds); a worker's
    claim grows with its Merkle proof (⌈log2 N⌉ siblings), nothing else with N."""
    from refiner.chain import public_key_bytes
    from refiner.chain.accounts import demo_account
    from refiner.config import load_task_file
    from refiner.cost import estimate, measure

    ctx = Ctx.load(config)
    prices = [_gwei(p) for p in (gas_price or list(DEFAULT_PRICES))]
    with user_errors():
        spec = load_task_file(task_file, models=ctx.settings.models)
        # a stand-in requester key: the description's size, and so the deployment's gas, is the same
        description = spec.description(public_key_bytes(demo_account("cost-requester")).hex())
        cfg = spec.task_config(description.to_json())
    n = workers if workers is not None else cfg.max_workers
    r = rounds if rounds is not None else cfg.max_rounds
    if not 1 <= n <= cfg.max_workers:
        fail(f"--workers must be 1 to the task's max_workers ({cfg.max_workers}), not {n}")
    if not 1 <= r <= cfg.max_rounds:
        fail(f"--rounds must be 1 to the task's max_rounds ({cfg.max_rounds}), not {r}")
    out.print(f"measuring the task's calls on an embedded chain ({task_file})…", style="dim")
    with user_errors():
        e = estimate(measure(cfg), cfg, n, r)

    table = Table(title=f"{task_file.name}: {n} workers, {r} rounds, committee of {e.validators}")
    table.add_column("who")
    table.add_column("gas", justify="right")
    for p in prices:
        table.add_column(f"at {p.normalize():f} gwei", justify="right")
    rows = [
        ("requester (deploy, fund, recruit, start and finalize every round)", e.requester_gas),
        ("a worker (sign up, submit every round, claim once)", e.worker_gas),
        ("a validator (claim its seat, commit and reveal every round, claim once)", e.validator_gas),
        ("one round, every participant (the claims spread over the rounds)", e.round_gas),
        ("the whole task, every participant", e.task_gas),
    ]
    for who, gas in rows:
        table.add_row(who, f"{gas:,}", *(funds(_fee(gas, p), wei) for p in prices))
    out.print(table)
    out.print(
        f"Besides gas, the requester escrows {funds(e.escrow_wei, wei)} of rewards ({r} rounds; what is not "
        f"paid out can be withdrawn) and each worker deposits {funds(e.deposit_wei, wei)} at sign-up, back "
        "with its first submission; a validator's stake stays its own (locked while it holds seats).",
        soft_wrap=True,
    )


def _gwei(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        fail(f"--gas-price {text!r}: write a number of gwei, e.g. 20 or 0.01")
    if not value.is_finite() or value < 0:
        fail(f"--gas-price {text!r}: it must be a number of gwei, 0 or more")
    return value


def _fee(gas: int, gwei: Decimal) -> int:
    return int(gas * gwei * 10**9)
