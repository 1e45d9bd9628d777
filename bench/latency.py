"""A deployment's round latency next to the simulation's time: participants in parallel, phases bounded by
block time, storage transfers measured (issue 17).

    .venv/bin/python bench/latency.py                    # N = 5, 20, 100 workers, a committee of 8
    .venv/bin/python bench/latency.py --quick            # N = 3, committee of 2, small data
    .venv/bin/python bench/latency.py --markdown docs/latency.md

Measured on this machine, medians of ``--repeats`` (small CNN, one local epoch, the demo's shard size):
a worker's training; its update encrypted to the committee and the requester and stored on its IPFS node;
a validator's IPFS node fetching and decrypting N such updates from the worker's (two in-process kubo
nodes peered over loopback); one validator's `evaluate_round` with the task default measure
(trusted-data) over N updates. Chain steps are bounded by the block time: each transaction the round
waits for (start, the last submission, the last commitment, the last reveal, the finalization) is
included in the next block, a full block time in the worst case.

Deployment (everyone on its own device, in parallel): 5 blocks + one worker's fetch, training and upload
+ one validator's fetch of N updates and evaluation. The simulation (`Simulation.run_round`, one
process) runs every worker and every validator one after the other: N trainings and uploads + C
validators' fetches and evaluations, with no block waits (the embedded chain mines at once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BLOCK_TIMES = (12, 2)
TX_STEPS = ("startRound", "last submission", "last commitment", "last reveal", "finalizeRound")


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(sizes: Sequence[int], committee: int, images: int, validation_size: int, repeats: int) -> dict[str, Any]:
    import torch

    from refiner.chain import demo_account, public_key_bytes
    from refiner.fl.data import load_mnist, split_mnist
    from refiner.fl.measures import measure_for
    from refiner.fl.models import initial_state, resolve_model, serialize
    from refiner.fl.round_evaluation import evaluate_round
    from refiner.fl.training import TrainingConfig, train_local
    from refiner.sharing import Context, retrieve, share
    from refiner.storage import IpfsStore

    torch.set_num_threads(1)  # one device's core, as the other benches
    model_fn = resolve_model("small_cnn")
    train, _ = load_mnist()
    validation, shards = split_mnist(train, [images], validation_size=validation_size, seed=0)
    start = initial_state(model_fn, 0)
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.1)
    trained: dict[str, Any] = {}

    def train_once() -> None:
        trained["state"] = train_local(model_fn, start, shards[0], cfg)

    t_train = median_seconds(train_once, repeats)
    update = serialize(trained["state"])

    worker, requester = demo_account("latency-worker"), demo_account("latency-requester")
    validators = [demo_account(f"latency-validator-{i}") for i in range(committee)]
    recipients = {a.address: public_key_bytes(a) for a in [requester, *validators]}
    out: dict[str, Any] = {
        "train_s": t_train,
        "update_bytes": len(update),
        "images": images,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        a = IpfsStore(Path(tmp) / "worker", fetch_timeout=30)
        b = IpfsStore(Path(tmp) / "validator", fetch_timeout=30)
        try:
            b.connect(a.listen_addresses()[0])
            handles: list[tuple[Any, Any, Context]] = []

            def upload() -> None:
                ctx = Context("0x" + "11" * 20, 1, worker.address, f"update-{len(handles)}")
                handles.append((*share(a, update, ctx, recipients), ctx))

            out["upload_s"] = median_seconds(upload, repeats)
            out["fetch_s"] = {}
            out["evaluate_s"] = {}
            measure_ = measure_for("trusted-data")
            for n in sizes:
                while len(handles) < n + repeats * n:  # fresh files for every fetch: nothing cached on b
                    upload()
                batches = iter(range(repeats))

                def fetch_n(n: int = n) -> None:
                    k = next(batches)
                    for payload, envelope, ctx in handles[k * n : (k + 1) * n]:
                        retrieve(b, payload, envelope, ctx, validators[0], max_bytes=64 << 20)

                out["fetch_s"][str(n)] = median_seconds(fetch_n, repeats)
                noisy = []
                for i in range(n):  # distinct updates of the same size; evaluation time does not depend on them
                    g = torch.Generator().manual_seed(i)
                    noisy.append(
                        (
                            f"0x{i:040x}",
                            {k: v + 1e-3 * torch.randn(v.shape, generator=g) for k, v in trained["state"].items()},
                            images,
                        )
                    )
                out["evaluate_s"][str(n)] = median_seconds(
                    lambda noisy=noisy: evaluate_round(model_fn, start, noisy, validation, 10.0, measure_),
                    max(1, repeats // 2),
                )
        finally:
            a.close()
            b.close()
    return out


def latency_rows(m: dict[str, Any], sizes: Sequence[int], committee: int) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        worker = m["train_s"] + m["upload_s"]
        validator = m["fetch_s"][str(n)] + m["evaluate_s"][str(n)]
        row: dict[str, Any] = {
            "workers": n,
            "committee": committee,
            "worker_s": worker,
            "validator_s": validator,
            "simulation_s": n * worker + committee * validator,
        }
        for block in BLOCK_TIMES:
            row[f"deployment_{block}s"] = len(TX_STEPS) * block + worker + validator
        rows.append(row)
    return rows


def markdown(m: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "# A round's latency: a deployment against the simulation",
        "",
        "Generated by `bench/latency.py` (issue 17); rerun with `.venv/bin/python bench/latency.py --markdown "
        "docs/latency.md`. Small CNN, one local epoch on "
        f"{m['images']:,} images per worker, one thread per participant, medians of the repeats on this "
        "machine. Measured: a worker's training ({:.2f} s); its update ({:,} bytes) encrypted to the "
        "committee and the requester and stored on its IPFS node ({:.3f} s); a validator's node fetching "
        "and decrypting the round's N updates from the worker's (two kubo nodes over loopback); one "
        "validator's `evaluate_round` with trusted-data, the task default. Measured {} on {} cores.".format(
            m["train_s"], m["update_bytes"], m["upload_s"], m["date"], m["cores"]
        ),
        "",
        "The **simulation** (`refiner demo`, the benches: one process) runs the N workers and the C "
        "validators one after the other, with no block waits; a **deployment** runs them in parallel on "
        "their own devices, and the round waits for five transactions to be mined in turn (start, the last "
        "submission, the last commitment, the last reveal, the finalization; claims come after, off the "
        "round's path), each within a block time at worst. Network transfers between machines add to the "
        "loopback fetches measured here.",
        "",
        "| workers | committee | a worker (train + upload, s) | a validator (fetch N + evaluate, s) | "
        "simulation (s) | deployment, 12 s blocks (s) | deployment, 2 s blocks (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['committee']} | {r['worker_s']:.2f} | {r['validator_s']:.2f} | "
            f"{r['simulation_s']:.1f} | {r['deployment_12s']:.1f} | {r['deployment_2s']:.1f} |"
        )
    fetch = ", ".join(f"N = {n}: {s:.2f} s" for n, s in m["fetch_s"].items())
    evals = ", ".join(f"N = {n}: {s:.2f} s" for n, s in m["evaluate_s"].items())
    lines += [
        "",
        f"- Fetching and decrypting the round's updates: {fetch}. Evaluating them: {evals}.",
        "- With 12 s blocks the five block waits (60 s) dominate small rounds; with 2 s blocks (10 s) the "
        "validator's evaluation does, and it grows with N while a worker's part does not.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="5,20,100")
    ap.add_argument("--committee", type=int, default=8)
    ap.add_argument("--images", type=int, default=1000, help="images per worker")
    ap.add_argument("--validation", type=int, default=500, help="validation images")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        sizes, committee, images, validation, repeats = [3], 2, 100, 100, 1
    else:
        sizes = [int(x) for x in args.sizes.split(",")]
        committee, images, validation, repeats = args.committee, args.images, args.validation, args.repeats
    m = measure(sizes, committee, images, validation, repeats)
    rows = latency_rows(m, sizes, committee)
    page = markdown(m, rows)
    print(page)
    out = {"measured": m, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.markdown:
        args.markdown.write_text(page)
    return out


if __name__ == "__main__":
    main()
