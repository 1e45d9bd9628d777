"""The paper's demonstration (section 3): MNIST digits, 5 workers (one with shuffled labels), a committee
drawn by VRF sortition from 12 validators, several rounds on the embedded chain and a local store, every
participant with its own key."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from refiner.chain import Chain, TaskConfig
from refiner.config import default_epsilon
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist, subset
from refiner.fl.evaluation import evaluate
from refiner.fl.models import BUILTIN_MODELS, ModelFn, load_factory, serialize
from refiner.parallel import check_parallel, executor_for
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import RoundReport, Simulation, default_durations
from refiner.storage import Store, open_store
from refiner.units import ETH, from_fixed
from refiner.wire.spec import CONTRIBUTIONS, DEFAULT_CONTRIBUTION, MODEL_NAME, Contribution

console = Console(width=120)


@dataclass(frozen=True)
class DemoOptions:
    rounds: int = 3
    workers: int = 5
    validators: int = 12
    committee: int = 8  # τ: expected committee seats
    malicious: int = 1
    non_iid: float | None = None
    chain: str = "embedded"
    storage: str | None = None  # default: a fresh directory under `out`
    model: str = "small_cnn"
    lr: float = 0.1
    epochs: int = 2
    contribution: Contribution = DEFAULT_CONTRIBUTION  # the validators' contribution measure
    out: Path = Path("demo-output")
    json_path: Path | None = None
    seed: int = 0
    #: Keep the run's own store on the embedded chain too (on a node it is always kept).
    keep_store: bool = False
    worker_reward: int = ETH
    validator_reward: int = 4 * ETH // 10
    sign_up_deposit: int = ETH // 100  # each worker's, back with its round-1 submission
    #: Where training and evaluations run: None (in this process), N local cores or a Ray address
    parallel: str | None = None

    def check(self) -> None:
        if min(self.rounds, self.workers, self.validators, self.epochs, self.committee) < 1:
            raise ValueError("--rounds, --workers, --validators, --committee and --epochs must be at least 1")
        if not 0 <= self.malicious <= self.workers:
            raise ValueError(f"--malicious must be between 0 and --workers ({self.workers})")
        if self.contribution not in CONTRIBUTIONS:
            raise ValueError(f"--contribution {self.contribution!r}: use one of {', '.join(CONTRIBUTIONS)}")
        name, models = demo_model(self.model)
        if name not in BUILTIN_MODELS and name not in models:
            raise ValueError(
                f"--model {name!r}: use one of {sorted(BUILTIN_MODELS)} or package.module:function"
            )
        if self.parallel is not None:
            check_parallel(self.parallel)


def demo_model(model: str) -> tuple[str, dict[str, ModelFn]]:
    """The task's model name and everyone's local models: a built-in by name, or the demo operator's own
    ``package.module:function``, which every (in-process) participant registers under its function name
    (the task names the model, never the code)."""
    if ":" not in model:
        return model, {}
    name = model.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    if not MODEL_NAME.fullmatch(name) or name in BUILTIN_MODELS:
        name = "custom"
    return name, {name: load_factory(model)}


def shard_sizes(workers: int, available: int) -> list[int]:
    """Different data sizes: 6k, 8k, … 14k, repeating; scaled down to fit."""
    sizes = [6000 + 2000 * (i % 5) for i in range(workers)]
    if sum(sizes) > available:
        sizes = [max(1, s * available // sum(sizes)) for s in sizes]
    return sizes


def malicious_layout(workers: int, malicious: int) -> list[WorkerBehaviour]:
    """Which workers have shuffled labels: the second worker (8k images) first, then the following ones,
    wrapping round to the first."""
    order = [*range(1, workers), 0]
    bad = set(order[:malicious])
    return [WorkerBehaviour.SHUFFLED_LABELS if i in bad else WorkerBehaviour.HONEST for i in range(workers)]


def validator_stakes(validators: int) -> list[int]:
    """Different stakes, as sortition weighs them: 1, 1.5, 2, 2.5 ETH, repeating."""
    return [ETH + (i % 4) * ETH // 2 for i in range(validators)]


def _eth(wei: int) -> str:
    return f"{wei / ETH:.4f}"


def _short(address: str) -> str:
    return address[:8] + "…"


def run(options: DemoOptions) -> dict[str, Any]:
    options.check()
    # one thread per process: on a shared 2-core machine, 2 threads were measured 10-20x slower under load
    torch.set_num_threads(1)
    torch.manual_seed(options.seed)
    chain = Chain.connect(options.chain)  # an unreachable node is refused before anything is written
    with _workspace(options, keep=options.keep_store or not chain.manual_clock) as storage:
        store = open_store(storage)
        try:
            return _run(options, chain, store, storage)
        finally:
            store.close()


@contextlib.contextmanager
def _workspace(options: DemoOptions, keep: bool) -> Iterator[str]:
    """The output folder and the run's store (a fresh folder in it unless `--storage` names one). A run
    that fails leaves nothing behind; a finished one removes its own store unless `keep` (on a node the
    store outlives the run: `refiner audit` reads it; the embedded chain ends with the process)."""
    created = [p for p in (options.out, *options.out.parents) if not p.exists()]
    options.out.mkdir(parents=True, exist_ok=True)
    own = None if options.storage else Path(tempfile.mkdtemp(prefix="store-", dir=options.out))
    try:
        yield options.storage or str(own)
    except BaseException:
        if own is not None:
            shutil.rmtree(own, ignore_errors=True)
        for folder in created:  # innermost first; only what this run created, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if own is not None and not keep:
        shutil.rmtree(own, ignore_errors=True)
        console.print(f"store {own} removed (the embedded chain ended with the run; --keep-store keeps it)")


def _run(options: DemoOptions, chain: Chain, store: Store, storage: str) -> dict[str, Any]:
    console.rule("[bold]Refiner demo: MNIST, incentive-driven federated learning on Ethereum")
    with console.status("loading MNIST (cached after the first run)…"):
        train, test = load_mnist()
    validation, shards = split_mnist(
        train, shard_sizes(options.workers, len(train) - 2000), 2000, options.non_iid, options.seed
    )
    behaviours = malicious_layout(options.workers, options.malicious)
    shards = [
        shuffle_labels(s, options.seed + i) if b is WorkerBehaviour.SHUFFLED_LABELS else s
        for i, (s, b) in enumerate(zip(shards, behaviours, strict=True))
    ]
    model, models = demo_model(options.model)
    config = TaskConfig(
        description="",
        worker_reward=options.worker_reward,
        validator_reward=options.validator_reward,
        target_accuracy=1.0,
        max_rounds=options.rounds,
        max_workers=options.workers,
        committee_size=options.committee,
        epsilon=default_epsilon(options.contribution),
        durations=default_durations(),
        sign_up_deposit=options.sign_up_deposit,
    )
    with console.status("deploying the registry and the task, registering and recruiting everyone…"):
        sim = Simulation.deploy(
            chain,
            store,
            shards,
            behaviours,
            [ValidatorBehaviour.HONEST] * options.validators,
            stakes=validator_stakes(options.validators),
            config=config,
            model=model,
            models=models,
            lr=options.lr,
            epochs=options.epochs,
            contribution=options.contribution,
            seed=options.seed,
            label="demo",
        )
    console.print(
        f"task {sim.task.address} on {chain.kind} chain, store {storage}\n"
        f"workers: "
        + ", ".join(f"{_short(w.address)} {len(w.data)} samples ({w.behaviour.value})" for w in sim.workers)
    )
    console.print(_committee_table(sim))
    if not sim.committee:
        raise SystemExit("sortition seated nobody: run again (a new seed) or raise --committee")
    initial = evaluate(sim.model_fn, sim.global_state, test).accuracy
    with console.status("starting Ray…" if options.parallel else ""):
        sim.executor = executor_for(options.parallel)
    try:
        if options.parallel:
            console.print(f"training and evaluations run on {sim.executor.describe()}")
        for _ in range(options.rounds):
            report = _round_with_a_bar(sim, validation, test)
            console.print(_round_table(sim, report))
    finally:
        sim.executor.close()
    return _finish(sim, options, test, initial)


def _round_with_a_bar(sim: Simulation, validation: Dataset, test: Dataset) -> RoundReport:
    """One round under its own progress bar, gone before the round's table is printed (none is left
    behind the tables)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
        progress_task = bar.add_task("starting", total=1)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(progress_task, description=step, completed=done, total=total)

        return sim.run_round(validation, test, progress)


def _committee_table(sim: Simulation) -> Table:
    weights = sim.task.committee()
    unit = sim.registry.stake_unit()
    table = Table(
        title=f"Committee by VRF sortition: τ = {sim.task.config().committee_size} expected seats, "
        f"{sum(weights.values())} won by {len(weights)} of {len(sim.validators)} validators"
    )
    for col in ("validator", "stake (ETH)", "stake units", "seats (vote weight)"):
        table.add_column(col)
    for v in sim.validators:
        stake = sim.registry.validator_info(v.address).stake
        table.add_row(_short(v.address), _eth(stake), str(stake // unit), str(weights.get(v.address, "—")))
    return table


def _round_table(sim: Simulation, report: RoundReport) -> Table:
    table = Table(
        title=f"Round {report.round}: test accuracy {report.accuracy:.2%}, validation loss "
        f"{report.validation_loss:.4f}, gas {report.gas_used:,}, {report.seconds:.1f} s"
        + ("" if report.consensus else " — NO CONSENSUS"),
    )
    for col in ("worker", "samples", "behaviour", "verdict", "contribution", "reward (ETH)", "why"):
        table.add_column(col)
    for w in sim.workers:
        verdict = "accepted" if w.address in report.accepted else "rejected"
        table.add_row(
            _short(w.address),
            str(len(w.data)),
            w.behaviour.value,
            verdict,
            f"{from_fixed(report.contributions.get(w.address, 0)):+.5f}",
            _eth(report.worker_rewards_wei[w.address]),
            report.reasons.get(w.address, "no submission in the consensus manifest"),
        )
    paid = report.validator_rewards_wei
    table.caption = "validators paid (ETH): " + ", ".join(
        f"{_short(v)} {_eth(wei)}" for v, wei in paid.items()
    )
    return table


def _finish(sim: Simulation, options: DemoOptions, test: Dataset, initial: float) -> dict[str, Any]:
    task, chain = sim.task, sim.chain
    model_path = options.out / "final_model.safetensors"
    model_path.write_bytes(serialize(sim.global_state))
    curve = options.out / "learning_curve.png"
    _plot(sim.reports, initial, curve)
    model = sim.model_fn()
    model.load_state_dict(sim.global_state)
    model.eval()
    sample = subset(test, list(range(12)))
    with torch.no_grad():
        predicted = model(sample.x).argmax(dim=1).tolist()
    console.print(
        "a few test digits: "
        + "  ".join(
            f"{y}→{p}{'' if y == p else '✗'}" for y, p in zip(sample.y.tolist(), predicted, strict=True)
        )
    )
    deposited = sum(int(e["amount"]) for e in task.get_events("Funded"))
    paid_out = sum(sim.earned.values())
    summary: dict[str, Any] = {
        "task": task.address,
        "initial_accuracy": initial,
        "final_accuracy": sim.reports[-1].accuracy,
        "rounds": [
            {
                "round": r.round,
                "accuracy": r.accuracy,
                "validation_loss": r.validation_loss,
                "accepted": r.accepted,
                "rejected": r.rejected,
                "contributions": r.contributions,
                "reasons": r.reasons,
                "worker_rewards_wei": r.worker_rewards_wei,
                "validator_rewards_wei": r.validator_rewards_wei,
                "gas_used": r.gas_used,
                "seconds": r.seconds,
                "consensus": r.consensus,
            }
            for r in sim.reports
        ],
        "workers": [
            {
                "address": w.address,
                "behaviour": w.behaviour.value,
                "samples": len(w.data),
                "earned_wei": sim.earned.get(w.address, 0),
            }
            for w in sim.workers
        ],
        "validators": [
            {
                "address": v.address,
                "behaviour": v.behaviour.value,
                "stake_wei": sim.registry.validator_info(v.address).stake,
                "weight": sim.task.committee().get(v.address, 0),
                "earned_wei": sim.earned.get(v.address, 0),
            }
            for v in sim.validators
        ],
        "requester_spent_wei": deposited,
        "paid_out_wei": paid_out,
        "refundable_wei": task.budget(),
        "contract_balance_wei": task.balance(),
        "model_path": str(model_path),
        "learning_curve": str(curve),
    }
    conserved = deposited == paid_out + task.owed() and task.balance() == task.owed()
    console.print(
        f"final test accuracy [bold]{summary['final_accuracy']:.2%}[/]; "
        f"requester deposited {_eth(deposited)} ETH "
        f"= paid out {_eth(paid_out)} + still held {_eth(task.owed())} "
        f"(refundable {_eth(task.budget())}): "
        + ("[green]Ether conserved exactly[/]" if conserved else "[red]MISMATCH[/]")
    )
    console.print(f"model: {model_path}   learning curve: {curve}   total gas: {chain.gas_used:,}")
    if options.json_path:
        options.json_path.write_text(json.dumps(summary, indent=2))
    return summary


def _plot(reports: list[RoundReport], initial: float, path: Path) -> None:
    """Test accuracy per round, the initial model at round 0, one tick per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    rounds = [0, *(r.round for r in reports)]
    ax.plot(rounds, [100 * initial, *(100 * r.accuracy for r in reports)], marker="o")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.25, rounds[-1] + 0.25)
    ax.set_xlabel("round (0: the initial model)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Refiner on MNIST: global model")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
