"""Overhead of a Refiner round over a plain FedAvg round: same model, data, seeds and machine, one run.

    .venv/bin/python bench/overhead.py                 # 5 workers x 8 validators and 100 x 20 (small_cnn)
    .venv/bin/python bench/overhead.py --quick         # tiny sizes (seconds)

Every round's wall time is split by wrapping library functions (no library edits) with a timing registry
that counts *exclusive* time (a nested timed call is charged to its own category, not its caller's):

  training       train_local (worker)             evaluation   evaluate_round (validator: 2N+2 evaluations)
  test eval      the report's test-set accuracy   encryption   AES-GCM encrypt/decrypt + ECIES wrap/unwrap
  storage        DirectoryStore.put/get           chain tx     Chain.transact/deploy/send_ether/fund
  chain reads    other JSON-RPC calls (views, logs) waiting    deadline waits (time travel / receipt polls)
  other          the rest: (de)serialisation, Merkle trees, JSON, Python glue

Protocol share = everything but training, evaluation and test eval, over the round's total. The plain
FedAvg round trains the same shards with the same seeds as the simulation's workers (so both produce the
same model) and evaluates on the same test set. Prints a table; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CATEGORIES = [
    "training",
    "evaluation",
    "test eval",
    "encryption",
    "storage",
    "chain tx",
    "chain reads",
    "waiting",
    "other",
]
COMPUTE = ("training", "evaluation", "test eval")


class Timers:
    """Exclusive wall time per category of the wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[float] = []

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, category: str, fn: Callable[..., Any], outer_only: bool = False) -> Callable[..., Any]:
        """``outer_only``: only timed when no other timed call is running (JSON-RPC reads inside a
        transaction belong to the transaction)."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if outer_only and self._stack:
                return fn(*args, **kwargs)
            t = time.perf_counter()
            self._stack.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                nested = self._stack.pop()
                self.seconds[category] += dt - nested
                self.calls[category] += 1
                if self._stack:
                    self._stack[-1] += dt

        return timed

    @contextmanager
    def installed(self) -> Iterator[Timers]:
        """Wrap the protocol's functions for the duration of the block."""
        import web3.providers.eth_tester.main as tester
        from web3.providers.rpc import HTTPProvider

        import refiner.fl.plain as plain
        import refiner.roles.validator as validator
        import refiner.roles.worker as worker
        import refiner.sharing as sharing
        import refiner.simulation as simulation
        from refiner.chain.backends import Backend
        from refiner.chain.connection import Chain
        from refiner.storage.directory import DirectoryStore

        targets: list[tuple[Any, str, str, bool]] = [
            (worker, "train_local", "training", False),
            (plain, "train_local", "training", False),
            (validator, "evaluate_round", "evaluation", False),
            (simulation, "evaluate", "test eval", False),
            (plain, "evaluate", "test eval", False),
            (sharing, "encrypt", "encryption", False),
            (sharing, "decrypt", "encryption", False),
            (sharing, "wrap_key", "encryption", False),
            (sharing, "unwrap_key", "encryption", False),
            (DirectoryStore, "put", "storage", False),
            (DirectoryStore, "get", "storage", False),
            (Chain, "transact", "chain tx", False),
            (Chain, "deploy", "chain tx", False),
            (Chain, "send_ether", "chain tx", False),
            (Chain, "fund", "chain tx", False),
            (Chain, "increase_time", "waiting", False),
            (Backend, "receipt", "waiting", False),  # polling a node (the embedded one looks up once)
            (tester.EthereumTesterProvider, "make_request", "chain reads", True),
            (HTTPProvider, "make_request", "chain reads", True),
        ]
        saved = [(obj, name, getattr(obj, name)) for obj, name, _, _ in targets]
        try:
            for obj, name, category, outer in targets:
                setattr(obj, name, self.wrap(category, getattr(obj, name), outer))
            yield self
        finally:
            for obj, name, original in saved:
                setattr(obj, name, original)

    def split(self, total: float) -> dict[str, float]:
        out = {c: self.seconds.get(c, 0.0) for c in CATEGORIES if c != "other"}
        out["other"] = max(0.0, total - sum(out.values()))
        return out


def protocol_share(split: dict[str, float]) -> float:
    total = sum(split.values())
    return (total - sum(split[c] for c in COMPUTE)) / total if total else 0.0


# ---------------------------------------------------------------------------------------------- setup


def task_config(workers: int, committee: int, rounds: int, epsilon: float = 5.0) -> Any:
    from refiner.chain import TaskConfig
    from refiner.simulation import default_durations
    from refiner.units import ETH

    return TaskConfig(
        description="bench",
        worker_reward=ETH,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=rounds,
        max_workers=workers,
        committee_size=committee,  # τ = W with 1-ETH stakes and 1-ETH units: every validator wins a seat
        epsilon=epsilon,
        durations=default_durations(),
    )


def deploy(
    store_dir: Path,
    shards: Sequence[Any],
    committee: int,
    rounds: int,
    model: str,
    lr: float,
    label: str,
    seed: int = 0,
) -> Any:
    from refiner.chain import Chain
    from refiner.roles import ValidatorBehaviour, WorkerBehaviour
    from refiner.simulation import Simulation
    from refiner.storage import DirectoryStore
    from refiner.units import ETH

    chain = Chain.connect()
    # Simulation.deploy funds everyone with 10,000 ETH from the node's first account; eth-tester's holds
    # 1,000,000 ETH, i.e. about 99 participants. Gas and 1-ETH stakes need far less: cap it at 100 ETH.
    fund = chain.fund
    chain.fund = lambda address, value: fund(address, min(value, 100 * ETH))  # type: ignore[method-assign]
    sim = Simulation.deploy(
        chain,
        DirectoryStore(store_dir),
        shards,
        [WorkerBehaviour.HONEST] * len(shards),
        [ValidatorBehaviour.HONEST] * committee,
        config=task_config(len(shards), committee, rounds),
        model=model,
        lr=lr,
        stake_unit=ETH,
        seed=seed,
        label=label,
    )
    if len(sim.committee) != committee:
        raise RuntimeError(f"committee of {len(sim.committee)} seats, expected {committee}")
    return sim


def plain_round(sim: Any, shards: Sequence[Any], test: Any, round_: int) -> tuple[Any, float]:
    """A plain FedAvg round from the simulation's current global model, with its workers' seeds and
    hyper-parameters: returns (the aggregate, test accuracy)."""
    import refiner.fl.plain as plain
    from refiner.fl.aggregation import fedavg
    from refiner.fl.training import TrainingConfig
    from refiner.wire.reads import description_of

    d = description_of(sim.task)
    locals_ = [
        plain.train_local(
            sim.model_fn,
            sim.global_state,
            shard,
            TrainingConfig(epochs=d.epochs, batch_size=d.batch_size, lr=d.lr, seed=w.seed + round_),
        )
        for w, shard in zip(sim.workers, shards, strict=True)
    ]
    state = fedavg(locals_, [len(s) for s in shards])
    return state, plain.evaluate(sim.model_fn, state, test).accuracy


def _warm_up(sim: Any, shard: Any, test: Any) -> None:
    """One untimed training and evaluation: torch's first call pays one-off set-up costs."""
    from refiner.fl.evaluation import evaluate
    from refiner.fl.training import TrainingConfig, train_local

    evaluate(sim.model_fn, train_local(sim.model_fn, sim.global_state, shard, TrainingConfig()), test)


@dataclass
class Cell:
    workers: int
    committee: int
    model: str
    shard: int
    validation: int
    rounds: int
    deploy_seconds: float
    refiner: dict[str, float]  # category -> median seconds per round
    plain: dict[str, float]
    refiner_total: float
    plain_total: float
    share: float  # protocol share of the Refiner round
    overhead: float  # (refiner - plain) / plain
    same_model: bool
    gas_per_round: int

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def run_cell(
    train: Any,
    test: Any,
    workers: int,
    committee: int,
    rounds: int,
    model: str = "small_cnn",
    shard: int = 500,
    validation: int = 300,
    test_size: int = 1000,
    lr: float = 0.1,
    log: Callable[[str], None] = print,
) -> Cell:
    from refiner.fl.data import split_mnist, subset
    from refiner.fl.models import model_digest

    val, shards = split_mnist(train, [shard] * workers, validation_size=validation, seed=0)
    test = subset(test, test_size)
    timers = Timers()
    refiner_rounds: list[dict[str, float]] = []
    plain_rounds: list[dict[str, float]] = []
    same = True
    gas = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp, timers.installed():
        t = time.perf_counter()
        sim = deploy(Path(tmp), shards, committee, rounds, model, lr, f"ovh-{workers}-{committee}")
        deploy_seconds = time.perf_counter() - t
        _warm_up(sim, shards[0], test)
        for r in range(1, rounds + 1):
            # plain first, from the same global model and with the same seeds, then the Refiner round
            timers.reset()
            t = time.perf_counter()
            plain_state, _ = plain_round(sim, shards, test, r)
            plain_rounds.append(timers.split(time.perf_counter() - t))
            timers.reset()
            t = time.perf_counter()
            report = sim.run_round(val, test)
            refiner_rounds.append(timers.split(time.perf_counter() - t))
            gas.append(report.gas_used)
            same = same and report.consensus and model_digest(plain_state) == model_digest(sim.global_state)
            log(
                f"  round {r}: refiner {sum(refiner_rounds[-1].values()):7.2f} s, "
                f"plain {sum(plain_rounds[-1].values()):7.2f} s, same model {same}"
            )
    med_r = {c: statistics.median(x[c] for x in refiner_rounds) for c in CATEGORIES}
    med_p = {c: statistics.median(x[c] for x in plain_rounds) for c in CATEGORIES}
    rt = statistics.median(sum(x.values()) for x in refiner_rounds)
    pt = statistics.median(sum(x.values()) for x in plain_rounds)
    share = statistics.median(protocol_share(x) for x in refiner_rounds)
    return Cell(
        workers,
        committee,
        model,
        shard,
        validation,
        rounds,
        deploy_seconds,
        med_r,
        med_p,
        rt,
        pt,
        share,
        (rt - pt) / pt,
        same,
        int(statistics.median(gas)),
    )


def table(cells: Sequence[Cell]) -> str:
    head = "| category | " + " | ".join(f"{c.workers}×{c.committee} Refiner | plain" for c in cells) + " |"
    sep = "|---|" + "---:|---:|" * len(cells)
    rows = [head, sep]
    for cat in CATEGORIES:
        rows.append(
            f"| {cat} | " + " | ".join(f"{c.refiner[cat]:.2f} | {c.plain[cat]:.2f}" for c in cells) + " |"
        )
    rows.append(
        "| **round total (s)** | "
        + " | ".join(f"**{c.refiner_total:.2f}** | **{c.plain_total:.2f}**" for c in cells)
        + " |"
    )
    rows.append("| protocol share (goal ≤ 10 %) | " + " | ".join(f"{c.share:.1%} | – " for c in cells) + " |")
    rows.append(
        "| Refiner / plain | "
        + " | ".join(f"{c.refiner_total / c.plain_total:.2f}× | – " for c in cells)
        + " |"
    )
    rows.append(
        "| same model as plain (bit for bit) | " + " | ".join(f"{c.same_model} | – " for c in cells) + " |"
    )
    rows.append("| rounds (median of) | " + " | ".join(f"{c.rounds} | {c.rounds}" for c in cells) + " |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--cells", default="5x8,100x20", help="workers x validators cells to run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from refiner.fl.data import load_mnist

    train, test = load_mnist()
    if args.quick:
        plan = [
            dict(workers=3, committee=3, rounds=2, model="logistic", shard=100, validation=100, test_size=200)
        ]
    else:
        plans = {
            "5x8": dict(workers=5, committee=8, rounds=3, shard=1000, validation=500),
            "100x20": dict(workers=100, committee=20, rounds=1, shard=500, validation=200),
        }
        plan = [plans[c] for c in args.cells.split(",") if c]
    cells = []
    for p in plan:
        print(f"overhead: {p}", flush=True)
        cells.append(run_cell(train, test, **p))  # type: ignore[arg-type]
    print(table(cells))
    for c in cells:
        print(
            f"  {c.workers}x{c.committee}: deploy {c.deploy_seconds:.1f} s, gas per round {c.gas_per_round:,}"
        )
    out = {"cells": [c.as_dict() for c in cells]}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
