"""Learning: test accuracy per round, Refiner vs plain FedAvg (CNN, 5 IID workers, all honest).

    .venv/bin/python bench/learning.py                 # small_cnn, 5 x 1,000 images, 10 rounds, committee 3
    .venv/bin/python bench/learning.py --quick         # logistic, 3 x 100 images, 2 rounds

Three curves from the same initial model and data split:
  refiner  the whole protocol (Simulation, embedded chain, encrypted storage, committee of 3)
  plain    FedAvg with the same local training seeds as the simulation's workers: must be identical,
           bit for bit (model digests compared every round)
  library  refiner.fl.plain.run_fedavg (its own per-worker seeds): the same algorithm, another draw
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def _overhead() -> Any:
    name = "bench_overhead"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(
    model: str,
    workers: int,
    shard: int,
    rounds: int,
    committee: int = 3,
    validation: int = 500,
    test_size: int = 10_000,
    lr: float = 0.1,
    library: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    from refiner.fl.aggregation import fedavg
    from refiner.fl.data import load_mnist, split_mnist, subset
    from refiner.fl.evaluation import evaluate
    from refiner.fl.models import clone_state, model_digest
    from refiner.fl.plain import run_fedavg
    from refiner.fl.training import TrainingConfig, train_local

    ov = _overhead()
    train, test = load_mnist()
    val, shards = split_mnist(train, [shard] * workers, validation_size=validation, seed=0)
    test = subset(test, test_size)
    out: dict[str, Any] = {
        "model": model,
        "workers": workers,
        "shard": shard,
        "rounds": rounds,
        "committee": committee,
    }
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        sim = ov.deploy(Path(tmp), shards, committee, rounds, model, lr, "learning")
        plain_state = clone_state(sim.global_state)
        refiner_acc, plain_acc, identical = [], [], []
        for r in range(1, rounds + 1):
            report = sim.run_round(val, test)
            locals_ = [
                train_local(sim.model_fn, plain_state, d, TrainingConfig(lr=lr, seed=w.seed + r))
                for w, d in zip(sim.workers, shards, strict=True)
            ]
            plain_state = fedavg(locals_, [len(d) for d in shards])
            plain_acc.append(evaluate(sim.model_fn, plain_state, test).accuracy)
            refiner_acc.append(report.accuracy)
            identical.append(model_digest(plain_state) == model_digest(sim.global_state))
            log(
                f"learning: round {r:2d}: refiner {report.accuracy:.4f}  plain {plain_acc[-1]:.4f}  "
                f"identical {identical[-1]}  ({report.seconds:.1f} s, gas {report.gas_used:,})"
            )
    out.update(refiner=refiner_acc, plain=plain_acc, identical=identical)
    if library:
        stats = run_fedavg(sim.model_fn, shards, val, test, rounds, TrainingConfig(lr=lr, seed=0))
        out["library"] = [s.test_accuracy for s in stats]
        log(f"learning: run_fedavg (own seeds): {[round(a, 4) for a in out['library']]}")
    return out


def table(res: dict[str, Any]) -> str:
    lines = [
        "| round | Refiner | plain FedAvg (same seeds) | identical model | run_fedavg (own seeds) |",
        "|---:|---:|---:|---|---:|",
    ]
    lib = res.get("library") or [float("nan")] * len(res["refiner"])
    for i, (a, b, same, c) in enumerate(
        zip(res["refiner"], res["plain"], res["identical"], lib, strict=True), 1
    ):
        lines.append(f"| {i} | {a:.4f} | {b:.4f} | {same} | {c:.4f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        res = run("logistic", 3, 100, 2, validation=100, test_size=300, library=False)
    else:
        res = run("small_cnn", 5, 1000, args.rounds)
    print(table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
