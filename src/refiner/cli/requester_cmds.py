"""`refiner requester …`: post a task, drive its rounds by hand or with `run`, get the model."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from refiner.agents import Agent
    from refiner.fl.data import Dataset
    from refiner.roles import Requester

from refiner.cli.context import (
    ChainOpt,
    ConfigOpt,
    Ctx,
    KeystoreOpt,
    RegistryOpt,
    StorageOpt,
    WeiOpt,
    err,
    fail,
    funds,
    out,
    setup_logging,
    user_errors,
)

app = typer.Typer(help="The requester: posts a task, escrows rewards, starts rounds, gets the model.")
TaskArg = Annotated[str, typer.Argument(help="the task contract's address")]


def _requester(ctx: Ctx) -> Requester:
    from refiner.roles import Requester

    return Requester(ctx.account, ctx.chain, ctx.store, ctx.registry, models=ctx.models)


def _load_dataset(path: Path) -> Dataset:
    from refiner.wire.datasets import dataset_from_bytes

    with user_errors():
        return dataset_from_bytes(path.read_bytes())


@app.command("create-task")
def create_task(
    task_file: Annotated[Path, typer.Argument(help="TOML task configuration (see docs/deployment.md)")],
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Deploy a task contract from TASK_FILE, register it and fund its budget; prints its address."""
    from refiner.chain import Task, public_key_bytes
    from refiner.config import load_task_file

    ctx = Ctx.load(config, chain, keystore=keystore, registry=registry)
    with user_errors():
        spec = load_task_file(task_file, models=ctx.settings.models)
        description = spec.description(public_key_bytes(ctx.account).hex())
        task = Task.deploy(
            ctx.chain, ctx.account, ctx.registry.address, spec.task_config(description.to_json())
        )
        ctx.registry.register_task(ctx.account, task.address)
        if spec.task.budget:
            task.fund(ctx.account, spec.task.budget)
    out.print(task.address)
    cfg = task.config()
    per_round, budget = cfg.worker_reward + cfg.validator_reward, spec.task.budget
    if budget < per_round * cfg.max_rounds:  # said on stderr: stdout is the address, for scripts
        covered = budget // per_round if per_round else cfg.max_rounds
        err.print(
            f"note: {cfg.max_rounds} rounds × {funds(per_round)} = {funds(per_round * cfg.max_rounds)}; the "
            f"budget of {funds(budget)} pays for {covered} of them: each later round takes what is missing "
            "from this account when it starts (`refiner requester fund` adds to the budget)",
            soft_wrap=True,
        )


def _simple(name: str, method: str, doc: str) -> None:
    def command(
        task: TaskArg,
        config: ConfigOpt = None,
        chain: ChainOpt = None,
        keystore: KeystoreOpt = None,
        registry: RegistryOpt = None,
    ) -> None:
        ctx = Ctx.load(config, chain, keystore=keystore, registry=registry)
        with user_errors():
            t = ctx.task(task)
            result = getattr(t, method)(ctx.account)
        out.print(f"{name}: {', '.join(result.names())} (gas {result.gas_used})")

    command.__doc__ = doc
    app.command(name)(command)


_simple("open-recruitment", "open_recruitment", "Open recruitment: workers sign up, validators draw seats.")
_simple("close-recruitment", "close_recruitment", "Close recruitment: workers and committee are fixed.")
_simple("stop", "stop_training", "Stop training between rounds; unspent budget stays withdrawable.")


@app.command("fund")
def fund(
    task: TaskArg,
    amount: Annotated[str, typer.Argument(help="e.g. '2 ether'")],
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    keystore: KeystoreOpt = None,
    wei: WeiOpt = False,
) -> None:
    """Add to the task's budget (rewards are escrowed from it when a round starts)."""
    from refiner.config import parse_wei

    ctx = Ctx.load(config, chain, keystore=keystore)
    with user_errors():
        t = ctx.task(task)
        t.fund(ctx.account, parse_wei(amount))
        out.print(f"budget: {funds(t.budget(), wei)}")


@app.command("withdraw")
def withdraw(
    task: TaskArg,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    keystore: KeystoreOpt = None,
    wei: WeiOpt = False,
) -> None:
    """Take back the whole unspent budget (never the escrow of a round in flight)."""
    ctx = Ctx.load(config, chain, keystore=keystore)
    with user_errors():
        t = ctx.task(task)
        amount = t.budget()
        if amount:
            t.withdraw(ctx.account, amount)
    out.print(f"withdrew {funds(amount, wei)}" if amount else "nothing to withdraw: the budget is empty")


@app.command("start-round")
def start_round(
    task: TaskArg,
    validation: Annotated[Path, typer.Option(help="validation set (safetensors, `refiner data mnist`)")],
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
    seed: Annotated[int, typer.Option(help="seed of the initial model (round 1)")] = 0,
) -> None:
    """Start the next round from the latest consensus model (the initial model in round 1), escrowing
    the round's rewards (topping the budget up from the account if needed)."""
    from refiner.agents import RequesterAgent
    from refiner.roles.requester import shortfall

    ctx = Ctx.load(config, chain, storage, keystore, registry)
    agent = RequesterAgent(ctx.account, ctx.registry, requester=_requester(ctx), seed=seed)
    with user_errors():
        t = ctx.task(task)
        round_, state = agent.latest_model(t)
        budget, missing = t.budget(), shortfall(t)
        result = agent.role.start_round(t, state, _load_dataset(validation))
    out.print(f"round {t.current_round()} started from the model of round {round_} (gas {result.gas_used})")
    if missing:  # never take more than the budget without saying so
        out.print(
            f"the budget held {funds(budget)}: {funds(missing)} of the round's rewards came from your account"
        )
    ctx.close()


@app.command("retrieve-model")
def retrieve_model(
    task: TaskArg,
    out_path: Annotated[Path, typer.Argument(metavar="OUT.safetensors")],
    round_: Annotated[int | None, typer.Option("--round", help="default: the latest consensus round")] = None,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Fetch and decrypt a round's consensus model, check its digest, write it as safetensors."""
    from refiner.fl.models import model_digest, serialize

    ctx = Ctx.load(config, chain, storage, keystore, registry)
    with user_errors():
        t = ctx.task(task)
        r = round_ or t.last_consensus_round()
        if not r:
            fail("no round of this task has reached consensus yet")
        state = _requester(ctx).retrieve_model(t, r)
        out_path.write_bytes(serialize(state))
    out.print(f"model of round {r} (digest {model_digest(state).hex()}) written to {out_path}")
    ctx.close()


@app.command("run")
def run(
    task: TaskArg,
    validation: Annotated[Path, typer.Option(help="validation set (safetensors)")],
    model_out: Annotated[Path | None, typer.Option("--out", help="write the final model here")] = None,
    min_workers: Annotated[int, typer.Option(help="close recruitment once this many signed up…")] = 0,
    min_seats: Annotated[int, typer.Option(help="…and this many committee seats are claimed")] = 0,
    exit_when_done: Annotated[bool, typer.Option(help="exit once the task has terminated")] = True,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
    poll: Annotated[float, typer.Option(help="seconds between looks at the chain")] = 1.0,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Drive the task on its own: open recruitment, close it (at the deadline or once --min-workers and
    --min-seats are met), start every round from the latest consensus model, finalize, save the model."""
    from refiner.agents import RequesterAgent

    log = setup_logging(log_level, "requester")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    agent = RequesterAgent(
        ctx.account,
        ctx.registry,
        only_task=task,
        poll_interval=poll,
        log=log,
        requester=_requester(ctx),
        validation=_load_dataset(validation),
        out=model_out,
        min_workers=min_workers,
        min_seats=min_seats,
    )
    _run_agent(agent, exit_when_done)
    ctx.close()


def _run_agent(agent: Agent, exit_when_done: bool) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent.log.info("%s running as %s", type(agent).__name__, agent.address)
    agent.run(stop, exit_when_done=exit_when_done)


@app.command("status")
def status(task: TaskArg, config: ConfigOpt = None, chain: ChainOpt = None, wei: WeiOpt = False) -> None:
    """The task's phase, money, members and rounds (the same as `refiner task show`)."""
    from refiner.cli.read_cmds import task_show

    task_show(task, config, chain, wei)
