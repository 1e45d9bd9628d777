"""Gas per call and per round, N = 5, 100, 1000 workers and committees of 8 and 32 (embedded chain, py-evm).

    .venv/bin/python bench/gas.py                     # the full grid
    .venv/bin/python bench/gas.py --quick             # N = 3, 6 and committees of 2, 3
    .venv/bin/python bench/gas.py --gwei 20           # price for the ETH column (default 20 gwei)
    .venv/bin/python bench/gas.py --deposit 0         # tasks without a sign-up deposit (default 0.01 ETH)

One fresh task per cell through one round with consensus, like tests/contracts/test_gas.py (stand-in
storage handles, so no training: gas does not depend on the model). Every worker signs up and submits;
with N > 100 only the first ``--claimers`` workers claim (a claim's gas depends on N only through the
Merkle proof, log2 N siblings), and the round's claim total is the median claim × N. Per-worker gas =
submit + claim, per-validator = commit + reveal + claim (the one-off seat claim excluded), both medians.

Then whole tasks of ``--rounds`` rounds (default 10) at N = 5 and 100, committee 8: rewards accrue and
every worker and validator claims once, after the last round; per worker and round = its submissions
and its one claim over the rounds, per validator and round = its commits, reveals and one claim over the
rounds (means over the participants).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKER_GOAL = 120_000
VALIDATOR_GOAL = 180_000
#: Per round of a 10-round task whose rewards are claimed once (issue 17).
WORKER_ROUND_GOAL = 60_000
VALIDATOR_ROUND_GOAL = 130_000
TASK_CELLS = [(5, 8), (100, 8)]
CALLS = [
    "signUp",
    "claimSeat",
    "submitTrainingResults",
    "commitManifest",
    "revealManifest",
    "finalizeRound",
    "claimReward",
    "claimValidatorReward",
]


def recruited(
    world: Any,
    workers: Sequence[Any],
    validators: Sequence[Any],
    deposit: int,
    rounds: int,
    gas: dict[str, list[int]],
) -> Any:
    """A fresh task of `rounds` rounds with `workers` signed up and `validators` seated, recruitment
    closed; the sign-ups' and seat claims' gas in `gas`."""
    from tests.helpers import new_task, seat

    from refiner.chain import Durations

    # each embedded block moves the clock on by ≥ 1 s: a thousand sign-ups need a long recruitment
    task = new_task(
        world,
        max_workers=len(workers),
        max_rounds=rounds,
        durations=Durations(recruitment=20_000, training=20_000, evaluation=20_000, reveal=20_000),
        sign_up_deposit=deposit,
    )
    task.open_recruitment(world.requester)
    for w in workers:
        gas["signUp"].append(task.sign_up(w).gas_used)
    for v in validators:
        gas["claimSeat"].append(seat(world, task, v).gas_used)
    task.close_recruitment(world.requester)
    return task


def play_round(
    world: Any,
    task: Any,
    workers: Sequence[Any],
    validators: Sequence[Any],
    gas: dict[str, list[int]],
    contributions: Sequence[int] | None = None,
    before: dict[str, int] | None = None,
) -> Any:
    """Start a round, every worker submits, every validator commits and reveals the same manifest,
    the requester finalizes; the gas of each call in `gas`. Returns the round's results tree (each
    leaf's earnings `before` it plus its share)."""
    from tests.helpers import handle, results_tree, salt_for, start_round

    from refiner.chain import Status

    gas["startRound"].append(start_round(world, task).gas_used)
    r = task.current_round()
    samples = [1000 * (i + 1) for i in range(len(workers))]
    for w, n in zip(workers, samples, strict=True):
        res = task.submit_training_results(
            w, handle(f"update-{r}-{w.address}"), handle(f"keys-{w.address}"), n
        )
        gas["submitTrainingResults"].append(res.gas_used)
    assert task.status() == Status.EVALUATING
    tree = results_tree(workers, samples, contributions, before=before)
    manifest = tree.manifest(900_000, hashlib.sha256(b"model").digest(), handle("agg"), handle("det"))
    for v in validators:
        commitment = task.commitment_for(v.address, r, manifest, salt_for(v, r))
        gas["commitManifest"].append(task.commit_manifest(v, commitment).gas_used)
    for v in validators:
        gas["revealManifest"].append(task.reveal_manifest(v, manifest, salt_for(v, r)).gas_used)
    gas["finalizeRound"].append(task.finalize_round(world.requester, manifest).gas_used)
    return tree


def measure(
    world: Any, workers: Sequence[Any], validators: Sequence[Any], claimers: int, deposit: int = 10**16
) -> dict[str, list[int]]:
    gas: dict[str, list[int]] = defaultdict(list)
    task = recruited(world, workers, validators, deposit, 3, gas)  # the round played does not end it
    tree = play_round(world, task, workers, validators, gas)
    r = task.current_round()
    for w in workers[:claimers]:
        res = task.claim_reward(w, r, tree.result_of(w.address), tree.proof(w.address))
        gas["claimReward"].append(res.gas_used)
    for v in validators:
        gas["claimValidatorReward"].append(task.claim_validator_reward(v).gas_used)
    return dict(gas)


def measure_task(
    world: Any, workers: Sequence[Any], validators: Sequence[Any], rounds: int, deposit: int = 10**16
) -> dict[str, list[int]]:
    """One task of `rounds` rounds, every worker submitting each round; every worker claims once with
    its leaf of the last round, every validator once through the last round."""
    from refiner.chain.earnings import carried

    gas: dict[str, list[int]] = defaultdict(list)
    task = recruited(world, workers, validators, deposit, rounds, defaultdict(list))
    earned: dict[str, int] = {}
    for r in range(1, rounds + 1):
        # contributions that differ from round to round, so that every round's shares leave dust
        contributions = [100 * (i + 1) + r for i in range(len(workers))]
        tree = play_round(world, task, workers, validators, gas, contributions, earned)
        earned = carried(earned, tree.results)
    for w in workers:
        res = task.claim_reward(w, rounds, tree.result_of(w.address), tree.proof(w.address))
        gas["claimReward"].append(res.gas_used)
    for v in validators:
        gas["claimValidatorReward"].append(task.claim_validator_reward(v).gas_used)
    assert task.balance() == task.owed()
    return dict(gas)


def summarise_task(n: int, c: int, rounds: int, gas: dict[str, list[int]]) -> dict[str, Any]:
    def mean(call: str) -> float:
        return sum(gas[call]) / len(gas[call])

    return {
        "workers": n,
        "committee": c,
        "rounds": rounds,
        "claimReward": int(statistics.median(gas["claimReward"])),
        "claimValidatorReward": int(statistics.median(gas["claimValidatorReward"])),
        "worker_per_round": round(mean("submitTrainingResults") + mean("claimReward") / rounds),
        "validator_per_round": round(
            mean("commitManifest") + mean("revealManifest") + mean("claimValidatorReward") / rounds
        ),
    }


def bench_world(workers: int, validators: int, label: str) -> tuple[Any, list[Any]]:
    """A fresh embedded chain's world with `validators` registered validators, and `workers` funded
    and registered worker accounts named after `label`."""
    from tests.helpers import build_world

    from refiner.chain import Chain, demo_account
    from refiner.units import ETH

    chain = Chain.connect()
    world = build_world(chain, n_workers=0, n_validators=validators, n_fresh=0)
    accounts = [demo_account(f"{label}-{i}") for i in range(workers)]
    for a in accounts:
        chain.fund(a.address, ETH)
        world.registry.register_worker(a)
    return world, accounts


def run_tasks(
    cells: Sequence[tuple[int, int]], rounds: int, log: Any = print, deposit: int = 10**16
) -> list[dict[str, Any]]:
    world, accounts = bench_world(max(n for n, _ in cells), max(c for _, c in cells), "gas-bench-task-worker")
    out = []
    for n, c in cells:
        row = summarise_task(
            n, c, rounds, measure_task(world, accounts[:n], world.validators[:c], rounds, deposit)
        )
        log(
            f"gas: a {rounds}-round task, N={n} C={c}, claims once: per worker and round "
            f"{row['worker_per_round']:,}, per validator and round {row['validator_per_round']:,}"
        )
        out.append(row)
    return out


def task_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| task | worker claim (once) | validator claim (once) | per worker and round "
        "| per validator and round |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rounds']} rounds, N={r['workers']}, C={r['committee']} | {r['claimReward']:,} | "
            f"{r['claimValidatorReward']:,} | **{r['worker_per_round']:,}** (goal ≤ {WORKER_ROUND_GOAL:,}) | "
            f"**{r['validator_per_round']:,}** (goal ≤ {VALIDATOR_ROUND_GOAL:,}) |"
        )
    return "\n".join(lines)


def summarise(n: int, c: int, gas: dict[str, list[int]], gwei: float) -> dict[str, Any]:
    med = {k: int(statistics.median(v)) for k, v in gas.items()}
    mx = {k: max(v) for k, v in gas.items()}
    per_worker = med["submitTrainingResults"] + med["claimReward"]
    per_worker_max = mx["submitTrainingResults"] + mx["claimReward"]
    per_validator = med["commitManifest"] + med["revealManifest"] + med["claimValidatorReward"]
    per_validator_max = mx["commitManifest"] + mx["revealManifest"] + mx["claimValidatorReward"]
    claims = sum(gas["claimReward"]) if len(gas["claimReward"]) == n else med["claimReward"] * n
    per_round = (
        gas["startRound"][0]
        + sum(gas["submitTrainingResults"])
        + sum(gas["commitManifest"])
        + sum(gas["revealManifest"])
        + gas["finalizeRound"][0]
        + claims
        + sum(gas["claimValidatorReward"])
    )
    return {
        "workers": n,
        "committee": c,
        "median": med,
        "max": mx,
        "min": {k: min(v) for k, v in gas.items()},
        "per_worker": per_worker,
        "per_worker_max": per_worker_max,
        "per_validator": per_validator,
        "per_validator_max": per_validator_max,
        "per_round": per_round,
        "claims_measured": len(gas["claimReward"]),
        "eth_per_round": per_round * gwei * 1e-9,
        "gwei": gwei,
    }


def run_grid(
    sizes: Sequence[int],
    committees: Sequence[int],
    claimers: int,
    gwei: float,
    log: Any = print,
    deposit: int = 10**16,
) -> list[dict[str, Any]]:
    world, accounts = bench_world(max(sizes), max(committees), "gas-bench-worker")
    out = []
    for n in sizes:
        for c in committees:
            gas = measure(world, accounts[:n], world.validators[:c], n if n <= 100 else claimers, deposit)
            row = summarise(n, c, gas, gwei)
            log(
                f"gas: N={n:5d} C={c:3d}: per worker {row['per_worker']:,} (max {row['per_worker_max']:,}), "
                f"per validator {row['per_validator']:,} (max {row['per_validator_max']:,}), "
                f"per round {row['per_round']:,} = {row['eth_per_round']:.4f} ETH at {gwei:g} gwei"
            )
            out.append(row)
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [f"N={r['workers']}, C={r['committee']}" for r in rows]
    lines = ["| call (median [min–max]) | " + " | ".join(cells) + " |", "|---|" + "---:|" * len(rows)]
    for call in [*CALLS[:5], "finalizeRound", "claimReward", "claimValidatorReward", "startRound"]:
        lines.append(
            f"| {call} | "
            + " | ".join(f"{r['median'][call]:,} [{r['min'][call]:,}–{r['max'][call]:,}]" for r in rows)
            + " |"
        )
    lines.append(
        f"| **per worker** (submit + claim; goal ≤ {WORKER_GOAL:,}) | "
        + " | ".join(f"**{r['per_worker']:,}** (max {r['per_worker_max']:,})" for r in rows)
        + " |"
    )
    lines.append(
        f"| **per validator** (commit + reveal + claim; goal ≤ {VALIDATOR_GOAL:,}) | "
        + " | ".join(f"**{r['per_validator']:,}** (max {r['per_validator_max']:,})" for r in rows)
        + " |"
    )
    lines.append(
        "| per round (all calls but sign-up/seat) | " + " | ".join(f"{r['per_round']:,}" for r in rows) + " |"
    )
    lines.append(
        f"| ETH per round at {rows[0]['gwei']:g} gwei | "
        + " | ".join(f"{r['eth_per_round']:.4f}" for r in rows)
        + " |"
    )
    lines.append("| worker claims measured | " + " | ".join(str(r["claims_measured"]) for r in rows) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="5,100,1000")
    ap.add_argument("--committees", default="8,32")
    ap.add_argument("--claimers", type=int, default=30)
    ap.add_argument("--gwei", type=float, default=20.0)
    ap.add_argument("--deposit", type=int, default=10**16, help="sign-up deposit in wei")
    ap.add_argument("--rounds", type=int, default=10, help="rounds of the whole-task measurement")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        sizes, committees, cells, rounds = [3, 6], [2, 3], [(3, 2)], 3
    else:
        sizes = [int(x) for x in args.sizes.split(",")]
        committees = [int(x) for x in args.committees.split(",")]
        cells, rounds = TASK_CELLS, args.rounds
    rows = run_grid(sizes, committees, args.claimers, args.gwei, deposit=args.deposit)
    print(table(rows))
    tasks = run_tasks(cells, rounds, deposit=args.deposit)
    print(task_table(tasks))
    out = {"rows": rows, "tasks": tasks}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
