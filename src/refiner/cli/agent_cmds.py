"""`refiner worker run`, `refiner validator run`, `refiner storage serve`: long-running participants."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from refiner.cli.context import (
    ChainOpt,
    ConfigOpt,
    Ctx,
    KeystoreOpt,
    RegistryOpt,
    StorageOpt,
    setup_logging,
    user_errors,
)
from refiner.cli.requester_cmds import _load_dataset, _run_agent

worker_app = typer.Typer(help="A worker: trains the global model on its private data for rewards.")
validator_app = typer.Typer(help="A validator: stakes, wins committee seats, evaluates and votes.")
storage_app = typer.Typer(help="Storage nodes: an IPFS hub that keeps every file a task announces.")

TaskOpt = Annotated[str | None, typer.Option("--task", help="follow only this task (default: every task)")]
ExitOpt = Annotated[bool, typer.Option(help="exit once every followed task has ended and all is claimed")]
PollOpt = Annotated[float, typer.Option(help="seconds between looks at the chain")]
LogOpt = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")]


@worker_app.command("run")
def worker_run(
    data: Annotated[Path, typer.Option(help="the worker's private data (safetensors, `refiner data mnist`)")],
    behaviour: Annotated[
        str,
        typer.Option(
            help="honest, or an attack for experiments (docs/robustness.md): targeted-label-flip, "
            "free-rider, random-weights, sign-flip, scaled-update, inflated-samples, replay-own-update, "
            "replay-others-handles"
        ),
    ] = "honest",
    seed: Annotated[int, typer.Option(help="seed of local training")] = 0,
    task: TaskOpt = None,
    exit_when_done: ExitOpt = False,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
    poll: PollOpt = 1.0,
    log_level: LogOpt = "INFO",
) -> None:
    """Register if needed, sign up to open tasks, train and submit in every round, claim rewards."""
    from refiner.agents import WorkerAgent
    from refiner.roles import Worker, WorkerBehaviour

    log = setup_logging(log_level, "worker")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    with user_errors():
        mode = WorkerBehaviour(behaviour)
    role = Worker(
        ctx.account, ctx.chain, ctx.store, ctx.registry, data=_load_dataset(data), behaviour=mode, seed=seed
    )
    agent = WorkerAgent(ctx.account, ctx.registry, only_task=task, poll_interval=poll, log=log, worker=role)
    _run_agent(agent, exit_when_done)
    ctx.close()


@validator_app.command("run")
def validator_run(
    stake: Annotated[str, typer.Option(help="stake to bond when registering, e.g. '1.5 ether'")] = "1 ether",
    behaviour: Annotated[
        str,
        typer.Option(
            help="honest, or an attack for experiments: copycat, non-revealer, random, colluder, thief"
        ),
    ] = "honest",
    task: TaskOpt = None,
    exit_when_done: ExitOpt = False,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
    poll: PollOpt = 1.0,
    log_level: LogOpt = "INFO",
) -> None:
    """Register with a stake if needed, draw sortition for each task and claim the seats won, evaluate,
    commit and reveal every round, settle rounds and claim rewards."""
    from refiner.agents import ValidatorAgent
    from refiner.config import parse_wei
    from refiner.roles import Validator, ValidatorBehaviour

    log = setup_logging(log_level, "validator")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    with user_errors():
        mode = ValidatorBehaviour(behaviour)
        wei = parse_wei(stake)
    role = Validator(ctx.account, ctx.chain, ctx.store, ctx.registry, behaviour=mode)
    agent = ValidatorAgent(
        ctx.account, ctx.registry, only_task=task, poll_interval=poll, log=log, validator=role, stake=wei
    )
    _run_agent(agent, exit_when_done)
    ctx.close()


@storage_app.command("serve")
def storage_serve(
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    registry: RegistryOpt = None,
    poll: PollOpt = 1.0,
    log_level: LogOpt = "INFO",
) -> None:
    """Run a storage node that fetches and keeps every file the registry's tasks announce on chain
    (round inputs, updates, manifests, aggregates), so files outlive the processes that wrote them.
    With an ipfs:// store whose URL has announce= and listen=, participants peer with it."""
    from refiner.agents.mirror import MirrorAgent
    from refiner.chain import demo_account

    log = setup_logging(log_level, "mirror")
    ctx = Ctx.load(config, chain, storage, registry=registry)
    store = ctx.store
    agent = MirrorAgent(demo_account("mirror"), ctx.registry, poll_interval=poll, log=log, store=store)
    _run_agent(agent, exit_when_done=False)
    ctx.close()
