"""The `refiner` command line."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer

from refiner.cli.context import ChainOpt, ConfigOpt, WeiOpt
from refiner.wire.spec import DEFAULT_CONTRIBUTION

app = typer.Typer(
    help="Refiner: reliable, incentive-driven federated learning on Ethereum.", no_args_is_help=True
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"refiner {version('refiner')}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit"),
    ] = False,
) -> None:
    """Refiner: reliable, incentive-driven federated learning on Ethereum."""


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="learning rounds")] = 3,
    workers: Annotated[int, typer.Option(help="workers (data sizes 6k, 8k, … 14k)")] = 5,
    validators: Annotated[
        int, typer.Option(help="registered validators (stakes 1, 1.5, 2, 2.5 ETH, …)")
    ] = 12,
    committee: Annotated[
        int, typer.Option(help="τ: expected committee seats (VRF sortition)", min=1, max=64)
    ] = 8,
    malicious: Annotated[int, typer.Option(help="workers whose labels are shuffled")] = 1,
    non_iid: Annotated[float | None, typer.Option("--non-iid", help="Dirichlet α for label skew")] = None,
    chain: Annotated[str, typer.Option(help="'embedded' or a JSON-RPC URL")] = "embedded",
    storage: Annotated[str | None, typer.Option(help="store URL (directory or ipfs://REPO)")] = None,
    model: Annotated[
        str, typer.Option(help="small_cnn | mnist_cnn | logistic | package.module:function (your own code)")
    ] = "small_cnn",
    lr: Annotated[float, typer.Option(help="local learning rate")] = 0.1,
    epochs: Annotated[int, typer.Option(help="local epochs per round")] = 2,
    contribution: Annotated[
        str, typer.Option(help="how validators score workers: trusted-data | leave-one-out | gtg-shapley")
    ] = DEFAULT_CONTRIBUTION,
    out: Annotated[Path, typer.Option(help="directory for the model, the curve and the store")] = Path(
        "demo-output"
    ),
    json_path: Annotated[Path | None, typer.Option("--json", help="write a JSON summary here")] = None,
    seed: Annotated[int, typer.Option(help="seed for data splits and initial model")] = 0,
    keep_store: Annotated[
        bool,
        typer.Option("--keep-store", help="keep the run's own store (on a node it is always kept)"),
    ] = False,
    parallel: Annotated[
        str | None,
        typer.Option(
            help="run training and evaluations on N worker processes, or on the Ray cluster at ray://HOST:PORT"
        ),
    ] = None,
) -> None:
    """Train MNIST with Refiner: 5 workers (one shuffled), 12 validators drawing τ = 8 seats, 3 rounds."""
    from refiner.cli.context import user_errors
    from refiner.demo import DemoOptions, run

    try:
        options = DemoOptions(
            rounds=rounds,
            workers=workers,
            validators=validators,
            committee=committee,
            malicious=malicious,
            non_iid=non_iid,
            chain=chain,
            storage=storage,
            model=model,
            lr=lr,
            epochs=epochs,
            contribution=contribution,  # type: ignore[arg-type]  # checked by options.check()
            out=out,
            json_path=json_path,
            seed=seed,
            keep_store=keep_store,
            parallel=parallel,
        )
        options.check()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with user_errors():
        run(options)


@app.command()
def committee(
    task: Annotated[str, typer.Argument(help="the task contract's address")],
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    wei: WeiOpt = False,
) -> None:
    """Who sits on a task's committee, with what vote weight (seats won by VRF sortition) and stake."""
    from rich.console import Console
    from rich.table import Table

    from refiner.chain import Registry
    from refiner.cli.context import Ctx, funds, user_errors

    ctx = Ctx.load(config, chain)
    with user_errors():
        t = ctx.task(task)
        registry = Registry(ctx.chain, t.registry())
        members, cfg = t.committee(), t.config()
        table = Table(
            title=f"Committee of {t.address}: τ = {cfg.committee_size}, {sum(members.values())} seats"
        )
        for col in ("validator", "seats (vote weight)", "stake"):
            table.add_column(col)
        for member, weight in members.items():
            table.add_row(member, str(weight), funds(registry.validator_info(member).stake, wei))
    Console(width=140).print(table)


@app.command("scripted-round")
def scripted_round() -> None:
    """One scripted round with synthetic manifests: the contracts' rules, refusals and gas per call."""
    from refiner.scripted_round import main

    raise typer.Exit(main())


@app.command("build-contracts")
def build_contracts() -> None:
    """Compile the Solidity contracts if any source, the compiler or a library changed."""
    from refiner.chain.build import main

    raise typer.Exit(main())


def _register() -> None:
    from refiner.cli import agent_cmds, cost_cmd, read_cmds, requester_cmds, serve_cmd, setup_cmds

    app.add_typer(setup_cmds.chain_app, name="chain")
    app.add_typer(setup_cmds.account_app, name="account")
    app.add_typer(setup_cmds.admin_app, name="admin")
    app.add_typer(requester_cmds.app, name="requester")
    app.add_typer(agent_cmds.worker_app, name="worker")
    app.add_typer(agent_cmds.validator_app, name="validator")
    app.add_typer(agent_cmds.storage_app, name="storage")
    app.add_typer(read_cmds.task_app, name="task")
    app.add_typer(read_cmds.data_app, name="data")
    app.command("tasks")(read_cmds.tasks)
    app.command("audit")(read_cmds.audit)
    app.command("serve")(serve_cmd.serve)
    app.command("cost")(cost_cmd.cost)


_register()

if __name__ == "__main__":
    app()
