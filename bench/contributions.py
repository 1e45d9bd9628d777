"""Leave-one-out vs GTG-Shapley on the same rounds: who gets paid, and what it costs the validator.

    .venv/bin/python bench/contributions.py                 # small CNN, 10 workers, 3 rounds (~2-4 min)
    .venv/bin/python bench/contributions.py --model logistic --rounds 5

Ten MNIST workers (IID images): five clean ones of 300…1,500 images, three of 900 images with 25, 50 and
75 % of their labels shuffled, a free-rider (submits the global model, claims 900 images) and a
duplicator holding a copy of the 1,200-image worker's data (it trains on it with its own seed). Every
round all of them train, then one validator's :func:`refiner.fl.round_evaluation.evaluate_round` runs
twice on the same updates, once with :class:`~refiner.fl.measures.LeaveOneOut` and once with
:class:`~refiner.fl.measures.GtgShapley` (defaults): the qualification and the aggregate do not depend
on the measure (checked: same digest), only the contributions, hence the rewards
(``workerReward × c / Σc`` over accepted workers with c > 0, as ``RefinerTask.claimReward``).

Prints the per-worker rewards under both measures, their Spearman and Pearson correlations (numpy only)
with data size (clean workers) and with label quality (the 900-image workers), and each measure's cost
(coalition-model evaluations and seconds per round); writes ``bench/results/contributions.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from refiner.fl.data import Dataset, load_mnist, split_mnist
from refiner.fl.evaluation import evaluate
from refiner.fl.measures import ContributionMeasure, LeaveOneOut, StateLike
from refiner.fl.measures.gtg_shapley import GtgShapley
from refiner.fl.models import ModelFn, State, initial_state, resolve_model
from refiner.fl.round_evaluation import RoundEvaluation, evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.units import ETH

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    size: int  # images held (and claimed)
    shuffled: float = 0.0  # fraction of its samples whose labels are permuted among themselves
    kind: str = "honest"  # "honest", "free-rider" or "duplicate" (of worker ``copy_of``'s data)
    copy_of: int = -1


DEFAULT_WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("300", 300),
    WorkerSpec("600", 600),
    WorkerSpec("900", 900),
    WorkerSpec("1200", 1200),
    WorkerSpec("1500", 1500),
    WorkerSpec("900, 25 % shuffled", 900, 0.25),
    WorkerSpec("900, 50 % shuffled", 900, 0.50),
    WorkerSpec("900, 75 % shuffled", 900, 0.75),
    WorkerSpec("free-rider (claims 900)", 900, kind="free-rider"),
    WorkerSpec("copy of 1200", 1200, kind="duplicate", copy_of=3),
)


def partially_shuffled(ds: Dataset, fraction: float, seed: int) -> Dataset:
    """``ds`` with the labels of a random ``fraction`` of its samples permuted among those samples."""
    if fraction <= 0:
        return ds
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(ds), generator=g)[: round(fraction * len(ds))]
    y = ds.y.clone()
    y[chosen] = ds.y[chosen][torch.randperm(len(chosen), generator=g)]
    return Dataset(ds.x, y.contiguous())


class Counted(ContributionMeasure):
    """Runs ``inner`` and records, per call, its coalition-model evaluations and seconds."""

    def __init__(self, inner: ContributionMeasure) -> None:
        self.inner = inner
        self.evaluations: list[int] = []
        self.seconds: list[float] = []
        self.methods: list[str] = []

    def contributions(
        self,
        model_fn: ModelFn,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        full_loss: float,
        *,
        global_state: StateLike,
    ) -> list[float]:
        t0 = time.perf_counter()
        if isinstance(self.inner, GtgShapley):
            est = self.inner.estimate(
                model_fn, states, samples, validation, full_loss, global_state=global_state
            )
            out, evals, method = list(est.contributions), est.evaluations, est.method
        else:
            out = self.inner.contributions(
                model_fn, states, samples, validation, full_loss, global_state=global_state
            )
            evals, method = (len(states) if len(states) > 1 else min(1, len(states))), "leave-one-out"
        self.seconds.append(time.perf_counter() - t0)
        self.evaluations.append(evals)
        self.methods.append(method)
        return out


def rewards_of(ev: RoundEvaluation, worker_reward: int) -> list[int]:
    """``RefinerTask.claimReward`` in one round: ``workerReward · c / Σc`` over accepted workers, c > 0."""
    total = sum(w.contribution_ppm for w in ev.workers if w.accepted and w.contribution_ppm > 0)
    return [
        worker_reward * w.contribution_ppm // total if total and w.accepted and w.contribution_ppm > 0 else 0
        for w in ev.workers
    ]


def _ranks(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Ranks 1..n, ties getting their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1, dtype=np.float64)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(
        list(_ranks(np.asarray(x, dtype=np.float64))), list(_ranks(np.asarray(y, dtype=np.float64)))
    )


@dataclass
class MeasureResult:
    rewards_wei: list[int]  # per worker, over all rounds
    contributions_ppm: list[list[int]] = field(default_factory=list)  # per round, per worker
    evaluations: list[int] = field(default_factory=list)  # per round
    seconds: list[float] = field(default_factory=list)  # per round
    methods: list[str] = field(default_factory=list)  # per round


@dataclass
class Comparison:
    workers: list[WorkerSpec]
    label_quality: list[float]  # measured share of correct labels (nan for the free-rider)
    accepted: list[list[bool]]  # per round, per worker
    accuracies: list[float]  # test accuracy after each round
    shared_seconds: list[float]  # per round: qualification + aggregate (both measures share it)
    measures: dict[str, MeasureResult]
    train_seconds: float


def compare(
    train: Dataset,
    test: Dataset,
    workers: Sequence[WorkerSpec] = DEFAULT_WORKERS,
    model: str = "small_cnn",
    rounds: int = 3,
    validation_size: int = 1000,
    epsilon: float = 1.0,
    lr: float = 0.1,
    seed: int = 0,
    worker_reward: int = ETH,
    gtg: GtgShapley | None = None,
) -> Comparison:
    """Run ``rounds`` rounds with ``workers`` and score every round with both measures."""
    model_fn = resolve_model(model)
    own = [w for w in workers if w.kind != "duplicate"]
    validation, shards = split_mnist(train, [w.size for w in own], validation_size, seed=seed)
    shard_of: dict[int, int] = {}  # worker → its shard (a duplicator gets the shard it copies)
    for i, w in enumerate(workers):
        if w.kind != "duplicate":
            shard_of[i] = len(shard_of)
    base = [shards[shard_of[w.copy_of if w.kind == "duplicate" else i]] for i, w in enumerate(workers)]
    data = [
        partially_shuffled(b, w.shuffled, seed * 1000 + i)
        for i, (w, b) in enumerate(zip(workers, base, strict=True))
    ]
    quality = [
        math.nan if w.kind == "free-rider" else float((d.y == b.y).float().mean())
        for w, d, b in zip(workers, data, base, strict=True)
    ]
    names = [f"w{i:02d}" for i in range(len(workers))]
    counted = {"leave-one-out": Counted(LeaveOneOut()), "gtg-shapley": Counted(gtg or GtgShapley())}
    results = {k: MeasureResult([0] * len(workers)) for k in counted}
    state: State = initial_state(model_fn, seed)
    accepted: list[list[bool]] = []
    accuracies: list[float] = []
    shared: list[float] = []
    train_s = 0.0
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        subs = [
            free_ride(state)
            if w.kind == "free-rider"
            else train_local(model_fn, state, d, TrainingConfig(lr=lr, seed=seed * 1000 + i + r))
            for i, (w, d) in enumerate(zip(workers, data, strict=True))
        ]
        train_s += time.perf_counter() - t0
        updates = [(names[i], s, w.size) for i, (s, w) in enumerate(zip(subs, workers, strict=True))]
        evs: dict[str, RoundEvaluation] = {}
        for key, measure in counted.items():
            t0 = time.perf_counter()
            evs[key] = evaluate_round(model_fn, state, updates, validation, epsilon, measure)
            total = time.perf_counter() - t0
            res = results[key]
            res.seconds.append(measure.seconds[-1])
            res.evaluations.append(measure.evaluations[-1])
            res.methods.append(measure.methods[-1])
            res.contributions_ppm.append([w.contribution_ppm for w in evs[key].workers])
            for i, wei in enumerate(rewards_of(evs[key], worker_reward)):
                res.rewards_wei[i] += wei
            if key == "leave-one-out":
                shared.append(total - measure.seconds[-1])
        if len({ev.digest for ev in evs.values()}) != 1:
            raise RuntimeError("the aggregate depends on the contribution measure")
        ev = evs["leave-one-out"]
        accepted.append([w.accepted for w in ev.workers])
        state = ev.aggregate
        accuracies.append(evaluate(model_fn, state, test).accuracy)
    return Comparison(list(workers), quality, accepted, accuracies, shared, results, train_s)


def correlations(c: Comparison, key: str) -> dict[str, dict[str, float]]:
    """Spearman/Pearson of the total reward with data size (clean, non-duplicate workers), with label
    quality (the workers of the most common size that trained on their own data), and with the number
    of correctly labelled samples (every worker that trained)."""
    rewards = [float(x) for x in c.measures[key].rewards_wei]
    ws = c.workers
    clean = [i for i, w in enumerate(ws) if w.kind == "honest" and w.shuffled == 0]
    own = [i for i, w in enumerate(ws) if w.kind == "honest"]
    sizes = [ws[i].size for i in own]
    common = max(set(sizes), key=lambda s: (sizes.count(s), s))
    same = [i for i in own if ws[i].size == common]
    trained = [i for i, w in enumerate(ws) if w.kind != "free-rider"]
    groups = {
        "size (clean workers)": (clean, [float(ws[i].size) for i in clean]),
        f"label quality ({common}-image workers)": (same, [c.label_quality[i] for i in same]),
        "correct labels (all that trained)": (trained, [ws[i].size * c.label_quality[i] for i in trained]),
    }
    out = {}
    for name, (idx, xs) in groups.items():
        ys = [rewards[i] for i in idx]
        out[name] = {"n": float(len(idx)), "spearman": spearman(xs, ys), "pearson": pearson(xs, ys)}
    return out


def _share(c: Comparison, key: str, i: int) -> float:
    paid = sum(c.measures[key].rewards_wei)
    return c.measures[key].rewards_wei[i] / paid if paid else 0.0


def _fmt(xs: Sequence[float], pct: bool = False, signed: bool = False) -> str:
    """Mean, and the range over seeds when there are several."""
    k = 100.0 if pct else 1.0
    f = "{:+.2f}" if signed else ("{:.1f}" if pct else "{:.2f}")
    vals = [x for x in xs if not math.isnan(x)]
    if not vals:
        return "—"
    mean = f.format(k * sum(vals) / len(vals)) + (" %" if pct else "")
    if min(vals) == max(vals):
        return mean
    return f"{mean} ({f.format(k * min(vals))}…{f.format(k * max(vals))})"


def report(runs: Sequence[Comparison]) -> str:
    """Markdown over one or more runs (seeds): per-worker reward shares, correlations, validator cost.
    Each cell is the mean over the runs, with the range in parentheses when there are several."""
    c0 = runs[0]
    keys = list(c0.measures)
    rounds = sum(len(c.accuracies) for c in runs)
    head = ["worker", "images", "correct labels", "accepted rounds", *[f"{k}: reward share" for k in keys]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, w in enumerate(c0.workers):
        row = [
            w.name,
            str(w.size),
            _fmt([c.label_quality[i] for c in runs], pct=True),
            f"{sum(sum(a[i] for a in c.accepted) for c in runs)}/{rounds}",
        ]
        row += [_fmt([_share(c, k, i) for c in runs], pct=True) for k in keys]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head = [
        "correlation of the total reward with",
        "workers",
        *[f"{k} {m}" for k in keys for m in ("Spearman", "Pearson")],
    ]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cors = [{k: correlations(c, k) for k in keys} for c in runs]
    for name in cors[0][keys[0]]:
        row = [name, f"{cors[0][keys[0]][name]['n']:.0f}"]
        row += [
            _fmt([cr[k][name][m] for cr in cors], signed=True) for k in keys for m in ("spearman", "pearson")
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    head = ["measure", "method (rounds)", "coalition evaluations per round", "seconds per round"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        methods = [m for c in runs for m in c.measures[k].methods]
        counts = ", ".join(f"{m} {methods.count(m)}" for m in dict.fromkeys(methods))
        evals = [float(e) for c in runs for e in c.measures[k].evaluations]
        secs = [x for c in runs for x in c.measures[k].seconds]
        lines.append(f"| {k} | {counts} | {_span(evals, '{:.0f}')} | {_span(secs, '{:.2f}')} |")
    shared = [x for c in runs for x in c.shared_seconds]
    what = f"(shared: qualification + aggregate, {len(c0.workers) + 1} evaluations)"
    lines.append(f"| {what} | | | {_span(shared, '{:.2f}')} |")
    return "\n".join(lines) + "\n"


def _span(xs: Sequence[float], f: str) -> str:
    """Mean (min…max) over every round of every run."""
    return f"{f.format(sum(xs) / len(xs))} ({f.format(min(xs))}…{f.format(max(xs))})" if xs else "—"


def to_json(c: Comparison) -> dict[str, Any]:
    keys = list(c.measures)
    return {
        "workers": [vars(w) for w in c.workers],
        "label_quality": [None if math.isnan(q) else q for q in c.label_quality],
        "accepted": c.accepted,
        "accuracies": c.accuracies,
        "shared_seconds": c.shared_seconds,
        "train_seconds": c.train_seconds,
        "measures": {k: vars(c.measures[k]) for k in keys},
        "correlations": {
            k: {
                g: {m: (None if math.isnan(v) else v) for m, v in d.items()}
                for g, d in correlations(c, k).items()
            }
            for k in keys
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2", help="comma list: one run per seed (data split and training)")
    ap.add_argument("--validation", type=int, default=1000)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "contributions.json")
    args = ap.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, {platform.node()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.model}, {args.rounds} rounds, "
        f"validation {args.validation}, ε {args.epsilon}, lr {args.lr}, seeds {seeds}",
        flush=True,
    )
    t0 = time.perf_counter()
    train, test = load_mnist()
    runs = []
    for seed in seeds:
        t1 = time.perf_counter()
        c = compare(
            train,
            test,
            model=args.model,
            rounds=args.rounds,
            validation_size=args.validation,
            epsilon=args.epsilon,
            lr=args.lr,
            seed=seed,
        )
        runs.append(c)
        print(
            f"seed {seed}: test accuracy by round {', '.join(f'{100 * a:.2f} %' for a in c.accuracies)}; "
            f"{time.perf_counter() - t1:.1f} s (training {c.train_seconds:.1f} s)",
            flush=True,
        )
    total = time.perf_counter() - t0
    print()
    print(report(runs))
    print(f"total {total:.1f} s")
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "python": sys.version.split()[0], "torch": torch.__version__},
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "total_seconds": total,
        "runs": [{"seed": seed, **to_json(c)} for seed, c in zip(seeds, runs, strict=True)],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
