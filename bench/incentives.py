"""Who gets paid, and how well the model learns, under each contribution measure (issue 14).

    .venv/bin/python bench/incentives.py --quick     # CI smoke: logistic, 5 workers, IID, 3 rounds (s)
    .venv/bin/python bench/incentives.py             # docs/incentives.md's grid (logistic, ~20 min)
    .venv/bin/python bench/incentives.py --model small_cnn --rounds 5 --seeds 1   # the CNN row (slow)

One validator's round (:func:`refiner.fl.round_evaluation.evaluate_round`, what every honest committee
member computes; the chain adds nothing to the model) for each measure — ``leave-one-out`` (the default
before issue 14), ``gtg-shapley`` and ``trusted-data`` (the default now, given
the previous round's model so that its stale screen works) — on the same data, attackers and seeds, each
with its task default ε (none for trusted-data, 1.0 otherwise; ``NAME@EPS`` sets one, ``@none`` none).
Workers hold the demo's sizes scaled (``--sizes``; 5 workers: 600, 800, 1,000, 1,200, 1,400 images, i.e. the demo's 6k-14k / 10),
IID or Dirichlet(α) label skew. Pay follows ``RefinerTask.claimReward``: per round the worker reward
(1 unit) is shared ``c / Σc`` among accepted workers with ``c > 0``.

Per cell (model, distribution, attack, fraction of attackers, measure; mean over seeds):

* ``acc``: final test accuracy; ``honest``: FedAvg of the honest workers alone; ``fedavg``: plain FedAvg
  of every submitted update (attackers included, no screening);
* ``attack pay``: the attackers' share of all worker pay (for ``inflated`` and ``sybil`` the attackers
  hold real data: compare with ``attack data``, their share of the data);
* ``paid rounds``: the lowest fraction of rounds in which an honest worker was paid;
* ``ρ``: Spearman correlation of the honest workers' data sizes and total pay;
* ``min share/data``: the lowest ratio of an honest worker's pay share to its data share;
* ``evals``: the validator's model evaluations per round (forward passes over the validation set;
  trusted-data also trains its reference, in two calls: the task's epochs, then 9× more, reported
  apart); ``s``: its seconds per round.

Attacks: shuffled labels, sign flip, free rider, random weights, scaled ×10, inflated claim ×10,
extrapolator ``w_g + (w_g − w_p)``, perturbed copy (30 % noise) of the first honest worker's update,
permuted hidden units (CNN only), Sybil (the attacker's data split over 4 identities).
Writes ``bench/results/incentives.json`` (docs/incentives.md's figures are in bench/results/incentives-*.json);
``--markdown FILE`` writes the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import refiner.fl.measures.gtg_shapley as shapley_module
import refiner.fl.measures.leave_one_out as contribution_module
import refiner.fl.measures.trusted_data as trust_module
import refiner.fl.round_evaluation as round_module
from refiner.adversary import transforms as attacks
from refiner.chain.types import NO_EPSILON
from refiner.config import default_epsilon
from refiner.fl.aggregation import fedavg
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.fl.evaluation import evaluate
from refiner.fl.measures import measure_for
from refiner.fl.models import ModelFn, State, initial_state, resolve_model
from refiner.fl.round_evaluation import evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local

#: "NAME@EPS" runs a measure with its own ε (trusted-data does not need ε: its screen rejects bad updates)
MEASURES = ("leave-one-out", "gtg-shapley", "trusted-data", "trusted-data@1")
ATTACKS = (
    "none",
    "shuffled-labels",
    "sign-flip",
    "free-rider",
    "random-weights",
    "scaled-update",
    "inflated-samples",
    "extrapolator",
    "perturbed-copy",
    "permuted-units",
    "sybil",
)
SYBILS = 4


@dataclass
class Cell:
    model: str
    distribution: str
    attack: str
    fraction: float
    measure: str
    seed: int
    accuracy: float
    honest_accuracy: float
    fedavg_accuracy: float
    attack_pay: float
    attack_data: float
    min_paid_rounds: float
    spearman: float
    min_share_ratio: float
    evaluations: float
    trainings: float
    seconds: float


class _Counter:
    evaluations = 0
    trainings = 0


@contextmanager
def counting() -> Iterator[type[_Counter]]:
    """Counts forward passes over the validation set (evaluate, evaluate_many's models) and the reference
    trainings of the validator's modules while inside."""
    saved = (
        round_module.evaluate,
        round_module.evaluate_many,
        contribution_module.evaluate_many,
        shapley_module.evaluate_many,
        trust_module.train_local,
    )

    def one(*a: Any, **k: Any) -> Any:
        _Counter.evaluations += 1
        return saved[0](*a, **k)

    def many(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(model_fn: ModelFn, states: Sequence[Any], *a: Any, **k: Any) -> Any:
            _Counter.evaluations += len(states)
            return fn(model_fn, states, *a, **k)

        return wrapped

    def train(*a: Any, **k: Any) -> Any:
        _Counter.trainings += 1
        return saved[4](*a, **k)

    round_module.evaluate = one  # type: ignore[assignment]
    round_module.evaluate_many = many(saved[1])  # type: ignore[assignment]
    contribution_module.evaluate_many = many(saved[2])  # type: ignore[assignment]
    shapley_module.evaluate_many = many(saved[3])  # type: ignore[assignment]
    trust_module.train_local = train  # type: ignore[assignment]
    try:
        yield _Counter
    finally:
        (
            round_module.evaluate,
            round_module.evaluate_many,
            contribution_module.evaluate_many,
            shapley_module.evaluate_many,
            trust_module.train_local,
        ) = saved  # type: ignore[assignment]


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    if len(set(rx)) < 2 or len(set(ry)) < 2:
        return 0.0
    return statistics.correlation(rx, ry)


@dataclass
class Setting:
    model: str
    sizes: list[int]
    alpha: float | None
    rounds: int
    epsilon: float | None  # None: each measure's task default (refiner.config.default_epsilon)
    validation: int
    lr: float
    epochs: int


def _attacker_ids(n: int, fraction: float) -> list[int]:
    k = round(n * fraction)
    return list(range(n - k, n))  # the largest workers attack: the hardest case for pay


def _address(i: int, k: int | None = None) -> str:
    return f"0x{i + 1:040x}" if k is None else f"0x{i + 1:020x}{k + 1:020x}"


@dataclass
class Round:
    """What the workers of one round submit, given the model it starts from (and the previous one)."""

    s: Setting
    shards: list[Dataset]
    bad: list[int]
    attack: str
    seed: int

    def train(self, state: State, r: int, i: int, data: Dataset | None = None, k: int = 0) -> State:
        cfg = TrainingConfig(self.s.epochs, 32, self.s.lr, seed=self.seed * 1000 + r * 50 + i * 7 + k)
        return train_local(resolve_model(self.s.model), state, self.shards[i] if data is None else data, cfg)

    def honest(self) -> list[int]:
        return [i for i in range(len(self.shards)) if i not in self.bad]

    def updates(self, state: State, previous: State | None, r: int) -> list[tuple[str, State, int, int]]:
        """(identity, state, claimed samples, owner shard) per submission."""
        out: list[tuple[str, State, int, int]] = []
        first_honest = self.honest()[0] if self.honest() else 0
        source = self.train(state, r, first_honest) if self.attack == "perturbed-copy" else None
        for i, shard in enumerate(self.shards):
            n, a = len(shard), self.attack
            if i not in self.bad:
                out.append((_address(i), self.train(state, r, i), n, i))
            elif a == "shuffled-labels":
                out.append(
                    (_address(i), self.train(state, r, i, shuffle_labels(shard, self.seed * 100 + r)), n, i)
                )
            elif a == "sign-flip":
                out.append((_address(i), attacks.sign_flip(state, self.train(state, r, i)), n, i))
            elif a == "free-rider":
                out.append((_address(i), free_ride(state), n, i))
            elif a == "random-weights":
                out.append((_address(i), attacks.random_weights(state, 1.0, self.seed * 100 + r), n, i))
            elif a == "scaled-update":
                out.append((_address(i), attacks.scale_update(state, self.train(state, r, i), 10.0), n, i))
            elif a == "inflated-samples":
                out.append((_address(i), self.train(state, r, i), 10 * n, i))
            elif a == "extrapolator":
                ext = attacks.extrapolate(previous, state, 1.0) if previous is not None else free_ride(state)
                out.append((_address(i), ext, n, i))
            elif a == "perturbed-copy":
                assert source is not None
                out.append(
                    (_address(i), attacks.perturbed_copy(state, source, 0.3, self.seed * 100 + r + i), n, i)
                )
            elif a == "permuted-units":
                layers = attacks.PERMUTABLE_LAYERS.get(self.s.model)
                st = self.train(state, r, i)
                out.append(
                    (
                        _address(i),
                        attacks.permute_hidden_units(st, layers, self.seed + r) if layers else st,
                        3 * n,
                        i,
                    )
                )
            elif a == "sybil":
                for k, idx in enumerate(torch.arange(n).chunk(SYBILS)):
                    sub = Dataset(shard.x[idx], shard.y[idx])
                    out.append((_address(i, k), self.train(state, r, i, sub, k + 1), len(sub), i))
            else:
                raise ValueError(f"unknown attack {a!r}")
        return out


def baselines(rd: Round, test: Dataset) -> tuple[float, float]:
    """Final test accuracy of FedAvg over the honest workers alone, and of plain FedAvg over every
    submission (claimed counts, no screening)."""
    model_fn = resolve_model(rd.s.model)
    honest = plain = initial_state(model_fn, rd.seed)
    prev: State | None = None
    for r in range(1, rd.s.rounds + 1):
        ids = rd.honest()
        if ids:
            honest = fedavg([rd.train(honest, r, i) for i in ids], [len(rd.shards[i]) for i in ids])
        subs = rd.updates(plain, prev, r)
        prev, plain = plain, fedavg([u[1] for u in subs], [u[2] for u in subs])
    return evaluate(model_fn, honest, test).accuracy, evaluate(model_fn, plain, test).accuracy


def run_measure(rd: Round, measure_name: str, val: Dataset, test: Dataset, base: tuple[float, float]) -> Cell:
    s = rd.s
    model_fn = resolve_model(s.model)
    base_name, _, eps_text = measure_name.partition("@")
    if eps_text:
        epsilon = NO_EPSILON if eps_text == "none" else float(eps_text)
    else:
        epsilon = s.epsilon if s.epsilon is not None else default_epsilon(base_name)
    measure = measure_for(base_name)
    if isinstance(measure, trust_module.TrustedData):
        measure = trust_module.TrustedData(TrainingConfig(epochs=s.epochs, lr=s.lr))
    state = initial_state(model_fn, rd.seed)
    previous: State | None = None
    pay: dict[int, float] = {}
    paid: dict[int, int] = {}
    evals: list[int] = []
    trainings: list[int] = []
    seconds: list[float] = []
    for r in range(1, s.rounds + 1):
        subs = rd.updates(state, previous, r)
        owner = {u[0]: u[3] for u in subs}
        with counting() as counter:
            counter.evaluations = counter.trainings = 0
            t0 = time.perf_counter()
            ev = evaluate_round(
                model_fn,
                state,
                [u[:3] for u in subs],
                val,
                epsilon,
                measure,
                previous_state=previous if base_name == "trusted-data" else None,
            )
            seconds.append(time.perf_counter() - t0)
            evals.append(counter.evaluations)
            trainings.append(counter.trainings)
        payees = [w for w in ev.workers if w.accepted and w.contribution_ppm > 0]
        total = sum(w.contribution_ppm for w in payees)
        for w in payees:
            i = owner[w.worker]
            pay[i] = pay.get(i, 0.0) + w.contribution_ppm / total
        for i in {owner[w.worker] for w in payees}:
            paid[i] = paid.get(i, 0) + 1
        previous, state = state, ev.aggregate
    total_pay = sum(pay.values())
    data_total = sum(len(d) for d in rd.shards)
    ids = rd.honest()
    sizes = [len(rd.shards[i]) for i in ids]
    honest_pay = [pay.get(i, 0.0) for i in ids]
    return Cell(
        model=s.model,
        distribution="iid" if s.alpha is None else f"dirichlet-{s.alpha}",
        attack=rd.attack,
        fraction=len(rd.bad) / len(rd.shards),
        measure=measure_name,
        seed=rd.seed,
        accuracy=evaluate(model_fn, state, test).accuracy,
        honest_accuracy=base[0],
        fedavg_accuracy=base[1],
        attack_pay=sum(v for i, v in pay.items() if i in rd.bad) / total_pay if total_pay else 0.0,
        attack_data=sum(len(rd.shards[i]) for i in rd.bad) / data_total,
        min_paid_rounds=min((paid.get(i, 0) / s.rounds for i in ids), default=math.nan),
        spearman=spearman(sizes, honest_pay) if len(ids) > 2 else math.nan,
        min_share_ratio=min(
            (
                (p / total_pay) / (n / data_total) if total_pay else 0.0
                for p, n in zip(honest_pay, sizes, strict=True)
            ),
            default=math.nan,
        ),
        evaluations=statistics.median(evals),
        trainings=statistics.median(trainings),
        seconds=statistics.median(seconds),
    )


def run_grid(
    s: Setting,
    attack_list: Sequence[str],
    fractions: Sequence[float],
    measures: Sequence[str],
    seeds: Sequence[int],
    data: tuple[Dataset, Dataset],
    log: Callable[[str], None] = print,
) -> list[Cell]:
    cells: list[Cell] = []
    for seed in seeds:
        val, shards = split_mnist(data[0], s.sizes, s.validation, s.alpha, seed)
        for attack in attack_list:
            if attack == "permuted-units" and s.model not in attacks.PERMUTABLE_LAYERS:
                continue
            for fraction in [0.0] if attack == "none" else fractions:
                rd = Round(
                    s, shards, _attacker_ids(len(shards), fraction) if attack != "none" else [], attack, seed
                )
                base = baselines(rd, data[1])
                for m in measures:
                    t0 = time.perf_counter()
                    cell = run_measure(rd, m, val, data[1], base)
                    cells.append(cell)
                    log(
                        f"{cell.distribution} {attack} {fraction:.0%} {m} seed {seed}: acc {cell.accuracy:.4f} "
                        f"(honest {base[0]:.4f}, fedavg {base[1]:.4f}) attack pay {cell.attack_pay:.1%} "
                        f"paid rounds {cell.min_paid_rounds:.0%} ρ {cell.spearman:.2f} "
                        f"({time.perf_counter() - t0:.0f} s)"
                    )
    return cells


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.fmean(xs) if xs else math.nan


def table(cells: Sequence[Cell]) -> str:
    """One Markdown row per (distribution, attack, fraction, measure), means over seeds."""
    head = (
        "| data | attack | attackers | measure | acc % | honest % | fedavg % | attack pay % | attack data % "
        "| min paid rounds % | ρ | min share/data | evals | s/round |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    groups: dict[tuple[str, str, float, str], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.distribution, c.attack, c.fraction, c.measure), []).append(c)
    rows = []
    for (dist, attack, fraction, m), cs in groups.items():
        evals = _mean([c.evaluations for c in cs])
        train = _mean([c.trainings for c in cs])
        rows.append(
            f"| {dist} | {attack} | {fraction:.0%} | {m} | {100 * _mean([c.accuracy for c in cs]):.2f} "
            f"| {100 * _mean([c.honest_accuracy for c in cs]):.2f} | {100 * _mean([c.fedavg_accuracy for c in cs]):.2f} "
            f"| {100 * _mean([c.attack_pay for c in cs]):.1f} | {100 * _mean([c.attack_data for c in cs]):.0f} "
            f"| {100 * min(c.min_paid_rounds for c in cs):.0f} | {_mean([c.spearman for c in cs]):.2f} "
            f"| {min(c.min_share_ratio for c in cs):.2f} | {evals:.0f}{f' + {train:.0f} training' if train else ''} "
            f"| {_mean([c.seconds for c in cs]):.3f} |"
        )
    return head + "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="CI smoke: 3 rounds, 1 seed, IID, four attacks at 40 %%"
    )
    p.add_argument("--model", default="logistic")
    p.add_argument("--sizes", default="600,800,1000,1200,1400")
    p.add_argument("--distributions", default="iid,0.5", help="iid and/or Dirichlet alphas")
    p.add_argument("--attacks", default=",".join(a for a in ATTACKS))
    p.add_argument("--fractions", default="0.2,0.4")
    p.add_argument("--measures", default=",".join(MEASURES))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epsilon", type=float, default=None, help="ε for all (default: each measure's own)")
    p.add_argument("--validation", type=int, default=1000)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--json", default="bench/results/incentives.json")
    p.add_argument("--markdown", default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.seeds, a.distributions, a.fractions = 3, 1, "iid", "0.4"
        a.attacks = "none,sign-flip,extrapolator,inflated-samples"
        a.json = None
    torch.set_num_threads(1)
    data = load_mnist()
    cells: list[Cell] = []
    started = time.perf_counter()
    for dist in a.distributions.split(","):
        s = Setting(
            a.model,
            [int(x) for x in a.sizes.split(",")],
            None if dist == "iid" else float(dist),
            a.rounds,
            a.epsilon,
            a.validation,
            a.lr,
            a.epochs,
        )
        cells += run_grid(
            s,
            a.attacks.split(","),
            [float(f) for f in a.fractions.split(",")],
            a.measures.split(","),
            range(a.seeds),
            data,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    text = table(cells)
    print(
        f"{a.model}, workers of {a.sizes} images, {a.rounds} rounds, {a.seeds} seed(s), ε = {a.epsilon or 'per measure'}, "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps([asdict(c) for c in cells], indent=1))
    if a.markdown:
        Path(a.markdown).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
