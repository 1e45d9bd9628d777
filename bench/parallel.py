"""Parallel simulation: one round with workers' training and validators' evaluations on worker
processes, beside the same round run sequentially, with the same results bit for bit.

    .venv/bin/python bench/parallel.py                        # 20 × 8 and 100 × 20, small CNN, 2 cores
    .venv/bin/python bench/parallel.py --sizes 20x8 --cpus 2  # one cell
    .venv/bin/python bench/parallel.py --quick                # 4 workers × 2 validators, tiny shards
    .venv/bin/python bench/parallel.py --markdown docs/parallel.md

Each cell runs in a fresh child process: it deploys one task (every validator wins a seat, so two
deployments seat the same committee) and plays round 1 sequentially, then deploys it again and plays
round 1 on ``ProcessExecutor(cpus)`` (its workers started and warmed up before the clock starts). Both
rounds must give the same accepted set, contributions, payments and global model (digest), or the cell
fails. Memory: the peak resident set of the simulation's own process (ru_maxrss) after each path, and the
worker processes' resident sets summed at the end of the round (read from /proc).
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(HERE))


def _rss_of(pids: Sequence[int]) -> float:
    """Summed resident set (MB) of the processes `pids` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _worker_pids() -> list[int]:
    """The parallel workers: this process's pool of worker processes."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == os.getpid() and b"multiprocessing" in cmdline:
            out.append(int(d.name))
    return out


def run_cell(workers: int, committee: int, shard: int, validation: int, cpus: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    import overhead as ov

    from refiner.fl.data import load_mnist, split_mnist, subset
    from refiner.fl.models import model_digest
    from refiner.parallel import ProcessExecutor, Sequential

    train, test = load_mnist()
    val, shards = split_mnist(train, [shard] * workers, validation_size=validation, seed=0)
    test = subset(test, 500)

    def play(executor: Any) -> tuple[Any, float]:
        jobs_s.append(0.0)
        inner = executor.map

        def timed(fn: Any, jobs: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(fn, jobs)
            finally:
                jobs_s[-1] += time.perf_counter() - t

        executor.map = timed
        with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
            sim = ov.deploy(Path(tmp), shards, committee, 2, "small_cnn", 0.1, f"parallel-{workers}")
            ov._warm_up(sim, shards[0], test)
            sim.executor = executor
            t = time.perf_counter()
            report = sim.run_round(val, test)
            seconds = time.perf_counter() - t
        outcome = (
            report.consensus,
            sorted(report.accepted),
            report.contributions,
            report.worker_rewards_wei,
            report.validator_rewards_wei,
            model_digest(sim.global_state).hex(),
        )
        return outcome, seconds

    jobs_s: list[float] = []  # per path: seconds spent waiting for the executor's jobs
    # the same accounts and every validator seated: two deployments play the same round
    sequential, sequential_s = play(Sequential())
    sequential_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    executor: Any = ProcessExecutor(cpus) if cpus > 1 else Sequential()
    start_s = time.perf_counter() - t
    try:
        parallel, parallel_s = play(executor)
        workers_rss = _rss_of(_worker_pids())
    finally:
        executor.close()
    parallel_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if parallel != sequential:
        raise RuntimeError(f"the parallel round differs from the sequential one:\n{sequential}\n{parallel}")
    return {
        "workers": workers,
        "committee": committee,
        "shard": shard,
        "validation": validation,
        "cpus": cpus,
        "sequential_seconds": sequential_s,
        "parallel_seconds": parallel_s,
        "speedup": sequential_s / parallel_s,
        "parallel_jobs_seconds": jobs_s[1],
        "start_seconds": start_s,
        "same_results": True,
        "consensus": sequential[0],
        "accepted": len(sequential[1]),
        "sequential_peak_rss_mb": sequential_rss,
        "parallel_peak_rss_mb": parallel_rss,
        "workers_rss_mb": workers_rss,
        "engine": "processes" if cpus > 1 else "sequential",
    }


def run_cells(
    cells: Sequence[tuple[int, int]],
    shard: int,
    validation: int,
    cpus: int,
    log: Any = print,
) -> list[dict[str, Any]]:
    rows = []
    for workers, committee in cells:
        log(f"parallel: {workers} workers × {committee} validators, {cpus} worker processes ...")
        args = [str(a) for a in (workers, committee, shard, validation, cpus)]
        proc = subprocess.run(
            [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"parallel child {workers}x{committee} failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        log(
            f"  sequential {row['sequential_seconds']:.1f} s, parallel {row['parallel_seconds']:.1f} s "
            f"({row['speedup']:.2f}×), same results; peak RSS {row['sequential_peak_rss_mb']:.0f} → "
            f"{row['parallel_peak_rss_mb']:.0f} MB, parallel workers {row['workers_rss_mb']:.0f} MB"
        )
        rows.append(row)
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "# Parallel simulation",
        "",
        "Generated by `.venv/bin/python bench/parallel.py --markdown docs/parallel.md` (this machine: "
        f"{os.cpu_count()} cores). One round of a small-CNN task (one local epoch, batch 32, every validator "
        "seated) is deployed twice with the same accounts and played sequentially in one process, then in "
        "parallel (`refiner demo --parallel N`: worker processes; `--parallel ray://HOST:PORT`: a Ray "
        "cluster): the workers' training and the validators' evaluations run as jobs while the chain, the "
        "store and every transaction stay in the simulation's process. Both give the same accepted workers, "
        "contributions, payments and global model, bit for bit (the bench fails otherwise). Starting the "
        "workers (warmed up) is not in the round's time.",
        "",
        "*jobs*: the seconds the parallel round waited for the executor's jobs (training, evaluations); "
        "the *rest* (chain, store, encryption, the protocol's steps) runs in the simulation's process "
        "either way, so *best* = rest + (sequential − rest) / CPUs is what the CPUs could give at most "
        "with that part unchanged.",
        "",
        "| workers × validators | images per worker | engine | CPUs | sequential (s) | parallel (s) "
        "| of which jobs (s) | rest (s) | speed-up | best (s) | start (s) | peak RSS sequential (MB) "
        "| peak RSS parallel (MB) | parallel workers' RSS (MB) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rest = r["parallel_seconds"] - r["parallel_jobs_seconds"]
        best = rest + (r["sequential_seconds"] - rest) / r["cpus"]
        lines.append(
            f"| {r['workers']} × {r['committee']} | {r['shard']} | {r['engine']} | {r['cpus']} | "
            f"{r['sequential_seconds']:.1f} | {r['parallel_seconds']:.1f} | "
            f"{r['parallel_jobs_seconds']:.1f} | {rest:.1f} | {r['speedup']:.2f}× | "
            f"{best:.1f} | {r['start_seconds']:.1f} | {r['sequential_peak_rss_mb']:.0f} | "
            f"{r['parallel_peak_rss_mb']:.0f} | {r['workers_rss_mb']:.0f} |"
        )
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        extra = b["workers"] - a["workers"]
        if extra > 0:
            per = [(b[k] - a[k]) / extra for k in ("sequential_peak_rss_mb", "parallel_peak_rss_mb")]
            lines += [
                "",
                f"Memory per extra worker ({a['workers']} → {b['workers']} workers, the simulation's own "
                f"process): {per[0]:.2f} MB sequential, {per[1]:.2f} MB parallel.",
            ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="20x8,100x20", help="workers x validators, comma-separated")
    ap.add_argument("--shard", type=int, default=500, help="images per worker")
    ap.add_argument("--validation", type=int, default=200, help="validation images")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--child", nargs=5, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_cell(*args.child)))
        return {}
    if args.quick:
        args.sizes, args.shard, args.validation = "4x2", 40, 40
    cells = [tuple(int(x) for x in size.split("x")) for size in args.sizes.split(",")]
    rows = run_cells(cells, args.shard, args.validation, args.cpus)  # type: ignore[arg-type]
    out = {"parallel": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    return out


if __name__ == "__main__":
    main()
