"""Scale: one task with N workers and a 32-member committee on the embedded stack completes a round.

    .venv/bin/python bench/scale.py                     # N = 10, 100, 1000 (each in its own process)
    .venv/bin/python bench/scale.py --sizes 10,50       # other sizes
    .venv/bin/python bench/scale.py --quick             # N = 4, 8 with a committee of 4
    .venv/bin/python bench/scale.py --parallel 2        # training and evaluations on 2 worker processes

Simplified: the model is ``logistic`` and each worker holds 20 MNIST images (one SGD step of batch 20),
the validation set has 200 images. Everything else is the real protocol path: every worker fetches and
decrypts the global model, trains, encrypts its update to the 32 validators (ECIES key wrap each) and
stores it, submits on chain; every validator decrypts all N updates, runs evaluate_round (2N+2
evaluations), commits, reveals; the requester finalises; everyone claims with a Merkle proof.

Each size runs in a fresh child process so that its peak resident memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def _overhead() -> Any:
    spec = importlib.util.spec_from_file_location("bench_overhead", HERE / "overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_one(
    workers: int, committee: int, shard: int = 20, validation: int = 200, parallel: int = 1
) -> dict[str, Any]:
    """Deploy and run one round in this process (training and evaluations on `parallel` worker processes
    when it is above 1); returns times, split and peak memory (this process's; the workers' at the end)."""
    torch.set_num_threads(1)
    ov = _overhead()
    from refiner.fl.data import load_mnist, split_mnist, subset

    train, test = load_mnist()
    val, shards = split_mnist(train, [shard] * workers, validation_size=validation, seed=0)
    test = subset(test, 1000)
    timers = ov.Timers()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, timers.installed():
        t = time.perf_counter()
        sim = ov.deploy(Path(tmp), shards, committee, 1, "logistic", 0.1, f"scale-{workers}")
        deploy_seconds = time.perf_counter() - t
        ov._warm_up(sim, shards[0], test)
        from refiner.parallel import executor_for

        sim.executor = executor_for(parallel)
        timers.reset()
        t = time.perf_counter()
        try:
            report = sim.run_round(val, test)
            round_seconds = time.perf_counter() - t
            workers_rss = _children_rss_mb()
        finally:
            sim.executor.close()
        split = timers.split(round_seconds)
        calls = dict(timers.calls)
    return {
        "workers": workers,
        "committee": committee,
        "deploy_seconds": deploy_seconds,
        "round_seconds": round_seconds,
        "split": split,
        "calls": calls,
        "consensus": report.consensus,
        "accepted": len(report.accepted),
        "accuracy": report.accuracy,
        "gas_used": report.gas_used,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "parallel": parallel,
        "workers_rss_mb": workers_rss,
    }


def _children_rss_mb() -> float:
    """Summed resident set of this process's children (the worker processes), in MB."""
    total = 0
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                status = (d / "status").read_text()
                total += int(status.split("VmRSS:")[1].split()[0]) if "VmRSS:" in status else 0
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def run_sizes(
    sizes: Sequence[int], committee: int, log: Any = print, parallel: int = 1
) -> list[dict[str, Any]]:
    out = []
    for n in sizes:
        log(f"scale: {n} workers, committee {committee}, {parallel} worker process(es) ...")
        child = ["--child", str(n), "--committee", str(committee), "--parallel", str(parallel)]
        proc = subprocess.run(
            [sys.executable, __file__, *child],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"scale child for {n} workers failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        log(
            f"  {n:5d} workers: deploy {row['deploy_seconds']:7.1f} s, round {row['round_seconds']:7.1f} s, "
            f"peak RSS {row['peak_rss_mb']:6.0f} MB, consensus {row['consensus']}, accepted {row['accepted']}"
        )
        out.append(row)
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| workers | committee | deploy (s) | round (s) | s per worker | peak RSS (MB) | consensus | accepted | gas per round |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['committee']} | {r['deploy_seconds']:.1f} | {r['round_seconds']:.1f} | "
            f"{r['round_seconds'] / r['workers']:.3f} | {r['peak_rss_mb']:.0f} | {r['consensus']} | "
            f"{r['accepted']} | {r['gas_used']:,} |".replace("| 0 |", "| n/a |")
        )
    rows_split = [r for r in rows if r.get("split")]
    if not rows_split:
        return "\n".join(lines)
    cats = list(rows_split[0]["split"])
    lines += [
        "",
        "Round time split (s):",
        "",
        "| workers | " + " | ".join(cats) + " |",
        "|---:|" + "---:|" * len(cats),
    ]
    for r in rows_split:
        lines.append(f"| {r['workers']} | " + " | ".join(f"{r['split'][c]:.1f}" for c in cats) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--committee", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=1, help="worker processes for training and evaluations")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.committee, parallel=args.parallel)))
        return {}
    sizes, committee = (
        ([4, 8], 4) if args.quick else ([int(s) for s in args.sizes.split(",")], args.committee)
    )
    rows = run_sizes(sizes, committee, parallel=args.parallel)
    print(table(rows))
    out = {"rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
