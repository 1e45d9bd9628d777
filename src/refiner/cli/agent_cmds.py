"""`refiner worker run`, `refiner validator run`, `refiner storage serve`: long-running participants."""

from __future__ import annotations

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
    funds,
    out,
    setup_logging,
    user_errors,
)
from refiner.cli.requester_cmds import _load_dataset, _run_agent

if TYPE_CHECKING:
    from refiner.agents import Terms

worker_app = typer.Typer(help="A worker: trains the global model on its private data for rewards.")
validator_app = typer.Typer(help="A validator: stakes, wins committee seats, evaluates and votes.")
storage_app = typer.Typer(help="Storage nodes: an IPFS hub that keeps every file a task announces.")

TaskOpt = Annotated[str | None, typer.Option("--task", help="follow only this task (default: every task)")]
ExitOpt = Annotated[bool, typer.Option(help="exit once every followed task has ended and all is claimed")]
ClaimOnceOpt = Annotated[
    bool,
    typer.Option(
        "--claim-once",
        help="claim rewards once a task has ended, in one transaction for all its rounds (rewards accrue), "
        "instead of after every round",
    ),
]
PollOpt = Annotated[float, typer.Option(help="seconds between looks at the chain")]
LogOpt = Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="your own model a task may name: NAME=package.module:function (repeatable; also [models] in "
        "refiner.toml). Tasks only name models, they never name code",
    ),
]
MinRewardOpt = Annotated[
    str | None, typer.Option(help="skip tasks paying this role less per round, e.g. '0.1 ether'")
]
MaxDurationOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--max-duration",
        help="skip tasks with a longer phase: PHASE=DURATION (e.g. training=2h) or DURATION for every "
        "phase (repeatable)",
    ),
]
MaxEpochsOpt = Annotated[int | None, typer.Option(help="skip tasks asking for more local epochs per round")]


def _own_settings(
    ctx: Ctx,
    models: list[str] | None,
    min_reward: str | None,
    max_durations: list[str] | None,
    max_epochs: int | None,
    max_lock: str | None = None,
) -> Terms:
    """Merge the command line's models and terms into the settings (refiner.toml's [models] and [agent]);
    the agent's terms."""
    from refiner.agents.terms import PHASES

    agent = ctx.settings.agent.model_dump()
    pairs: dict[str, str] = {}
    for item in models or []:
        name, sep, path = item.partition("=")
        if not sep:
            fail(f"--model {item!r}: write NAME=package.module:function")
        pairs[name] = path
    for item in max_durations or []:
        phase, _, limit = item.rpartition("=")
        for one in [phase] if phase else PHASES:
            agent["max_durations"][one] = limit
    changes = {"min_reward": min_reward, "max_epochs": max_epochs, "max_lock": max_lock}
    agent.update({k: v for k, v in changes.items() if v is not None})
    ctx.merge(models={**ctx.settings.models, **pairs}, agent=agent)
    ctx.models  # noqa: B018 -- imported now: a bad one is reported before anything connects
    return terms_of(ctx)


def terms_of(ctx: Ctx) -> Terms:
    """The agent's terms as the settings (refiner.toml's [agent], merged with the command line) give them."""
    from refiner.agents import Terms

    a = ctx.settings.agent
    durations = {str(phase): seconds for phase, seconds in a.max_durations.items()}
    return Terms(a.min_reward, durations, a.max_epochs, a.max_lock)


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
    model: ModelOpt = None,
    min_reward: MinRewardOpt = None,
    max_duration: MaxDurationOpt = None,
    max_epochs: MaxEpochsOpt = None,
    exit_when_done: ExitOpt = False,
    claim_once: ClaimOnceOpt = False,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
    poll: PollOpt = 1.0,
    log_level: LogOpt = "INFO",
) -> None:
    """Register if needed, sign up to open tasks, train and submit in every round, claim rewards."""
    from refiner.adversary import make_worker
    from refiner.agents import WorkerAgent
    from refiner.roles import WorkerBehaviour

    log = setup_logging(log_level, "worker")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    terms = _own_settings(ctx, model, min_reward, max_duration, max_epochs)
    with user_errors():
        mode = WorkerBehaviour(behaviour)
    role = make_worker(
        mode,
        ctx.account,
        ctx.chain,
        ctx.store,
        ctx.registry,
        data=_load_dataset(data),
        seed=seed,
        models=ctx.models,
    )
    agent = WorkerAgent(
        ctx.account,
        ctx.registry,
        only_task=task,
        poll_interval=poll,
        log=log,
        claim_once=claim_once,
        worker=role,
        terms=terms,
    )
    _run_agent(agent, exit_when_done)
    ctx.close()


@validator_app.command("register")
def validator_register(
    stake: Annotated[str, typer.Option(help="stake to bond, e.g. '1.5 ether'")] = "1 ether",
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    keystore: KeystoreOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Register as a validator and bond the stake, then exit (`validator run` registers too, but a task
    opened before the stake is bonded draws its committee without it: register first)."""
    from refiner.config import parse_wei

    ctx = Ctx.load(config, chain, keystore=keystore, registry=registry)
    with user_errors():
        if ctx.registry.is_validator(ctx.account.address):
            out.print(f"{ctx.account.address} is a validator already")
            return
        ctx.registry.register_validator(ctx.account, parse_wei(stake))
    out.print(f"{ctx.account.address} registered as a validator with a stake of {funds(parse_wei(stake))}")


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
    model: ModelOpt = None,
    min_reward: MinRewardOpt = None,
    max_duration: MaxDurationOpt = None,
    max_epochs: MaxEpochsOpt = None,
    max_lock: Annotated[
        str | None,
        typer.Option(help="skip tasks that can keep the stake locked longer (default 30 days), e.g. '7d'"),
    ] = None,
    exit_when_done: ExitOpt = False,
    claim_once: ClaimOnceOpt = False,
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
    from refiner.adversary import make_validator
    from refiner.agents import ValidatorAgent
    from refiner.config import parse_wei
    from refiner.roles import ValidatorBehaviour

    log = setup_logging(log_level, "validator")
    ctx = Ctx.load(config, chain, storage, keystore, registry)
    terms = _own_settings(ctx, model, min_reward, max_duration, max_epochs, max_lock)
    with user_errors():
        mode = ValidatorBehaviour(behaviour)
        wei = parse_wei(stake)
    role = make_validator(mode, ctx.account, ctx.chain, ctx.store, ctx.registry, models=ctx.models)
    agent = ValidatorAgent(
        ctx.account,
        ctx.registry,
        only_task=task,
        poll_interval=poll,
        log=log,
        claim_once=claim_once,
        validator=role,
        stake=wei,
        terms=terms,
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
