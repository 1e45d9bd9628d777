"""Validator cost: one validator's evaluate_round for N = 5, 20, 100 updates vs (N+1) x one evaluation.

    .venv/bin/python bench/validator_cost.py            # small_cnn, 500 validation images
    .venv/bin/python bench/validator_cost.py --quick    # logistic, N = 3, 6

Leave-one-out needs the full aggregate and N counterfactual aggregates evaluated (N+1); the validator
also scores every local model for the ε-qualification (N more), and it evaluates the round's starting model for the aggregate check (one more), so evaluate_round does 2N+2 evaluations
(batched with evaluate_many: one pass over the data, each batch sliced once for all models). The
updates are the global model plus small Gaussian noise (all qualify; evaluation cost does not depend
on the weights' values). Medians of ``--repeat`` rounds in which single evaluations, the batched
evaluation and evaluate_round are timed one after the other (interleaved, in one process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def updates_for(model_fn: Any, n: int, seed: int = 0) -> tuple[Any, list[tuple[str, Any, int]]]:
    from refiner.fl.models import initial_state

    g = initial_state(model_fn, seed)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        s = {
            k: (v + 0.01 * torch.randn(v.shape, generator=gen, dtype=v.dtype)).contiguous()
            if v.is_floating_point()
            else v.clone()
            for k, v in g.items()
        }
        out.append((f"w{i}", s, 100 + i))
    return g, out


def measure(
    model: str, sizes: Sequence[int], validation_size: int, repeat: int, log: Any = print
) -> list[dict[str, Any]]:
    from refiner.fl.data import load_mnist, subset
    from refiner.fl.evaluation import evaluate, evaluate_many
    from refiner.fl.models import resolve_model
    from refiner.fl.round_evaluation import evaluate_round

    train, _ = load_mnist()
    val = subset(train, validation_size)
    fn = resolve_model(model)
    rows = []
    for n in sizes:
        g, updates = updates_for(fn, n)
        states = [s for _, s, _ in updates]
        evaluate(fn, g, val)  # warm-up
        times: dict[str, list[float]] = {"single": [], "many": [], "round": []}
        for _ in range(repeat):  # interleaved, so that load on the shared machine hits all three alike
            for _ in range(3):
                times["single"].append(_seconds(lambda: evaluate(fn, g, val)))
            times["many"].append(_seconds(lambda: evaluate_many(fn, states, val)))
            times["round"].append(_seconds(lambda u=updates: evaluate_round(fn, g, u, val, 100.0)))  # type: ignore[misc]
        single, many, rnd = (statistics.median(times[k]) for k in ("single", "many", "round"))
        row = {
            "model": model,
            "workers": n,
            "validation": validation_size,
            "single_eval": single,
            "bound": (n + 1) * single,
            "evaluations": 2 * n + 2,
            "evaluate_many_n": many,
            "evaluate_round": rnd,
            "ratio_to_bound": rnd / ((n + 1) * single),
            "ratio_to_evaluations": rnd / ((2 * n + 2) * single),
            "per_model_batched": many / n,
        }
        log(
            f"validator cost: N={n:4d}: evaluate_round {rnd:7.2f} s, (N+1)x single {row['bound']:7.2f} s "
            f"-> {row['ratio_to_bound']:.2f}x the bound, {row['ratio_to_evaluations']:.2f}x its 2N+2 "
            f"evaluations; batched per model {row['per_model_batched'] * 1e3:.1f} ms vs single {single * 1e3:.1f} ms"
        )
        rows.append(row)
    return rows


def _seconds(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| N | single evaluation (s) | bound (N+1)× single (s) | evaluate_round (s) | ratio to bound "
        "| evaluations done | ratio to (2N+2)× single | batched s/model |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['single_eval']:.3f} | {r['bound']:.2f} | {r['evaluate_round']:.2f} | "
            f"**{r['ratio_to_bound']:.2f}×** | {r['evaluations']} | {r.get('ratio_to_evaluations', 0):.2f}× | "
            f"{r['per_model_batched']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--sizes", default="5,20,100")
    ap.add_argument("--validation", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        rows = measure("logistic", [3, 6], 200, 2)
    else:
        rows = measure(args.model, [int(x) for x in args.sizes.split(",")], args.validation, args.repeat)
    print(table(rows))
    out = {"rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
