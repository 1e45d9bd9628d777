"""Robustness of Refiner against malicious workers, next to FedAvg, coordinate-wise median and Krum.

    .venv/bin/python bench/robustness.py            # the tables of docs/robustness.md (logistic, ~2 min)
    .venv/bin/python bench/robustness.py --quick    # 5 workers, IID, three attacks, 0/40/80 % (seconds)
    .venv/bin/python bench/robustness.py --full     # small CNN, 5 rounds, the same grid (hours)
    .venv/bin/python bench/robustness.py --full --workers 5 --attacks shuffled-labels,sign-flip,free-rider \
        --fractions 0,0.4,0.8 --json bench/results/robustness-cnn.json --plot docs/robustness-cnn.png

MNIST, 5 and 20 workers of ``--shard`` images each (IID, or label-skewed with Dirichlet(0.5) class
proportions), a validation set of ``--validation`` images held out by the requester, the official 10k
test set. For each worker attack and each fraction of attacking workers it runs, on the same data, the
same attackers and the same seeds:

* ``honest``: the honest workers alone with FedAvg (the reference: what the task could reach without
  the attackers);
* ``refiner``: what every Refiner validator runs, :func:`refiner.fl.round_evaluation.evaluate_round`
  (ε-filter on the validation loss, FedAvg of the qualified updates, leave-one-out contributions);
  the chain adds nothing to the model, so its aggregate *is* the next global model. Rewards follow
  ``RefinerTask.claimReward``: ``workerReward × c / Σc`` over the accepted workers with c > 0 (ppm
  contributions, integer division), the rest stays with the requester;
* ``refiner-loose``: the same with ``--loose-epsilon`` (2.0);
* ``refiner-adaptive``: a *proposed* rule, not Refiner's: qualify iff the loss is ≤ max(ε, L(global) −
  ``--adaptive-margin``), emulated with ``evaluate_round`` and that round's threshold;
* ``fedavg``, ``median``, ``krum``: :mod:`refiner.fl.aggregation` over every submitted update.

Training is shared between rules only where it is exactly equivalent: a worker's local model is cached
under (round, worker, data variant, digest of the global model it started from), so two rules whose
global models are bit-identical (every rule in round 1, or Refiner and the honest-only run when Refiner
accepts exactly the honest workers) train once. Worker i trains with seed ``seed·1000 + i + round``, as
:class:`refiner.simulation.Simulation`'s workers do, which is what the end-to-end cross-check (the real
protocol on the embedded chain, same configuration) relies on.

Prints Markdown tables, writes ``bench/results/robustness.json``, ``docs/robustness.png`` (largest worker
count, IID) and ``docs/robustness-non-iid.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from refiner.adversary import transforms as attacks
from refiner.adversary.transforms import AttackParameters
from refiner.fl.aggregation import resolve_aggregator
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.fl.evaluation import evaluate
from refiner.fl.measures import LeaveOneOut
from refiner.fl.models import ModelFn, State, clone_state, initial_state, model_digest, resolve_model
from refiner.fl.round_evaluation import evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.units import ETH, ONE, quantize

ROOT = Path(__file__).resolve().parent.parent
ATTACKS: tuple[str, ...] = (
    "shuffled-labels",
    "targeted-label-flip",
    "random-weights",
    "sign-flip",
    "scaled-update",
    "free-rider",
    "inflated-samples",
)
RULES: tuple[str, ...] = (
    "honest",
    "refiner",
    "refiner-loose",
    "refiner-adaptive",
    "fedavg",
    "median",
    "krum",
)
RULE_TITLES = {
    "honest": "honest only",
    "refiner": "Refiner",
    "refiner-loose": "Refiner, loose ε",
    "refiner-adaptive": "Refiner, adaptive ε",
    "fedavg": "FedAvg",
    "median": "Median",
    "krum": "Krum",
}
FRACTIONS: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True)
class Setup:
    """Everything that is the same in every run of a grid."""

    model: str = "logistic"
    shard: int = 500  # images per worker
    validation: int = 1000
    rounds: int = 3
    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 32
    epsilon: float = 1.0  # the task's qualification threshold (validation loss)
    loose_epsilon: float = 2.0  # the same protocol with a looser threshold (rule "refiner-loose")
    #: rule "refiner-adaptive" (a proposed change, not what Refiner does): qualify iff the validation loss
    #: is ≤ max(ε, L(global) − margin), i.e. also when the update improves the round's model by a margin
    adaptive_margin: float = 0.1
    alpha: float = 0.5  # Dirichlet concentration of the non-IID splits
    seed: int = 0
    worker_reward: int = ETH  # per round
    test_every_round: bool = True  # else only after the last round (the CNN's 10k-image test pass is ~1.4 s)
    attack: AttackParameters = field(default_factory=AttackParameters)


@dataclass(frozen=True)
class RuleRun:
    """One rule on one scenario."""

    rule: str
    accuracy: float  # final test accuracy
    accuracies: list[float]  # after each round (only the last one unless ``Setup.test_every_round``)
    flip_rate: float  # share of the test 7s classified as 1 (the targeted flip's success)
    seconds: float
    # Refiner only (empty otherwise)
    accepted: list[list[int]] = field(default_factory=list)  # per round, accepted worker indices
    contributions_ppm: list[list[int]] = field(default_factory=list)  # per round, per worker
    losses_ppm: list[list[int]] = field(default_factory=list)  # per round, per worker: validation loss
    rewards_wei: list[int] = field(default_factory=list)  # per worker, summed over rounds
    digests: list[str] = field(default_factory=list)  # per round, hex digest of the new global model


def train_seed(seed: int, worker: int, round_: int) -> int:
    """Worker ``worker``'s training seed in ``round_``: Simulation's ``seed·1000 + i`` plus the round."""
    return seed * 1000 + worker + round_


def paid_rewards(contributions_ppm: Sequence[int], accepted: Sequence[bool], worker_reward: int) -> list[int]:
    """``RefinerTask.claimReward``: ``workerReward · c / Σc`` (floor) for accepted workers with c > 0."""
    total = sum(c for c, a in zip(contributions_ppm, accepted, strict=True) if a and c > 0)
    if total == 0:
        return [0] * len(contributions_ppm)
    return [
        worker_reward * c // total if a and c > 0 else 0
        for c, a in zip(contributions_ppm, accepted, strict=True)
    ]


def test_metrics(model_fn: ModelFn, state: Mapping[str, torch.Tensor], test: Dataset) -> tuple[float, float]:
    """(accuracy, share of the 7s predicted as 1) on ``test`` (argmax, like ``evaluate``)."""
    model = model_fn()
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    preds = []
    with torch.inference_mode():
        for start in range(0, len(test), 1000):
            preds.append(model(test.x[start : start + 1000]).argmax(dim=-1))
    pred = torch.cat(preds)
    sevens = test.y == 7
    flip = float((pred[sevens] == 1).float().mean()) if bool(sevens.any()) else math.nan
    return float((pred == test.y).float().mean()), flip


class Federation:
    """The workers of one grid cell family: ``n`` shards (IID or Dirichlet), a validation set, the
    attacker order and a cache of local training (see the module docstring)."""

    def __init__(
        self,
        setup: Setup,
        train: Dataset,
        test: Dataset,
        workers: int,
        non_iid: bool,
        names: Sequence[str] | None = None,
    ) -> None:
        self.setup, self.test, self.n, self.non_iid = setup, test, workers, non_iid
        self.model_fn = resolve_model(setup.model)
        self.validation, self.shards = split_mnist(
            train,
            [setup.shard] * workers,
            setup.validation,
            setup.alpha if non_iid else None,
            setup.seed,
        )
        self.names = list(names) if names is not None else [f"w{i:02d}" for i in range(workers)]
        # who attacks: a seeded permutation, so that the attackers at 20 % are among those at 40 %, …
        g = torch.Generator().manual_seed(setup.seed + 7919)
        self.order = [int(i) for i in torch.randperm(workers, generator=g)]
        self.initial = initial_state(self.model_fn, setup.seed)
        self._variants: dict[tuple[int, str], Dataset] = {}
        self._cache: dict[tuple[int, int, str, bytes], State] = {}
        self.trainings = 0  # local trainings actually run (cache misses)

    def attackers(self, fraction: float) -> list[int]:
        return sorted(self.order[: round(fraction * self.n)])

    def data(self, i: int, variant: str) -> Dataset:
        """Worker i's data: ``clean``, ``shuffled`` (the paper's bad dataset) or ``flipped`` (7 → 1)."""
        if variant == "clean":
            return self.shards[i]
        key = (i, variant)
        if key not in self._variants:
            p = self.setup.attack
            self._variants[key] = (
                shuffle_labels(self.shards[i], train_seed(self.setup.seed, i, 0))
                if variant == "shuffled"
                else attacks.flip_labels(self.shards[i], p.flip_source, p.flip_target)
            )
        return self._variants[key]

    def forget_later_rounds(self) -> None:
        """Drop cached local models of rounds ≥ 2 (round 1 starts from the initial model in every run)."""
        self._cache = {k: v for k, v in self._cache.items() if k[0] == 1}

    def _trained(self, state: State, digest: bytes, round_: int, i: int, variant: str) -> State:
        key = (round_, i, variant, digest)
        if key not in self._cache:
            s = self.setup
            cfg = TrainingConfig(
                epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=train_seed(s.seed, i, round_)
            )
            self._cache[key] = train_local(self.model_fn, state, self.data(i, variant), cfg)
            self.trainings += 1
        return self._cache[key]

    def submission(self, state: State, digest: bytes, round_: int, i: int, attack: str | None) -> State:
        """What worker i submits in ``round_`` from global ``state``: its honest local model, or the
        attack's (the same transforms as :class:`refiner.roles.worker.Worker`)."""
        p = self.setup.attack
        if attack == "free-rider":
            return free_ride(state)
        if attack == "random-weights":
            return attacks.random_weights(state, p.noise_std, train_seed(self.setup.seed, i, round_))
        variant = {"shuffled-labels": "shuffled", "targeted-label-flip": "flipped"}.get(attack or "", "clean")
        local = self._trained(state, digest, round_, i, variant)
        if attack == "sign-flip":
            return attacks.sign_flip(state, local)
        if attack == "scaled-update":
            return attacks.scale_update(state, local, p.scale)
        return local

    def claimed(self, i: int, attack: str | None) -> int:
        n = len(self.shards[i])
        return n * self.setup.attack.inflation if attack == "inflated-samples" else n

    def run(self, rule: str, attack: str, attackers: Sequence[int]) -> RuleRun:
        """``setup.rounds`` rounds of ``rule`` with ``attackers`` carrying out ``attack``."""
        t0 = time.perf_counter()
        s = self.setup
        bad = set(attackers)
        members = [i for i in range(self.n) if rule != "honest" or i not in bad]
        state = clone_state(self.initial)
        accs: list[float] = []
        flip = math.nan
        accepted: list[list[int]] = []
        contributions: list[list[int]] = []
        losses: list[list[int]] = []
        rewards = [0] * self.n
        digests: list[str] = []
        for r in range(1, s.rounds + 1):
            digest = model_digest(state)
            who = {i: attack if i in bad else None for i in members}
            subs = [self.submission(state, digest, r, i, who[i]) for i in members]
            sizes = [self.claimed(i, who[i]) for i in members]
            if rule.startswith("refiner"):
                eps = s.loose_epsilon if rule == "refiner-loose" else s.epsilon
                if rule == "refiner-adaptive":
                    start = evaluate(self.model_fn, state, self.validation).loss
                    eps = max(s.epsilon, quantize(start - s.adaptive_margin) / ONE)
                updates = [(self.names[i], st, n) for i, st, n in zip(members, subs, sizes, strict=True)]
                verdict = evaluate_round(self.model_fn, state, updates, self.validation, eps, LeaveOneOut())
                flags = [w.accepted for w in verdict.workers]
                ppm = [w.contribution_ppm for w in verdict.workers]
                for i, wei in zip(members, paid_rewards(ppm, flags, s.worker_reward), strict=True):
                    rewards[i] += wei
                accepted.append([i for i, a in zip(members, flags, strict=True) if a])
                contributions.append(ppm)
                losses.append([w.loss_ppm for w in verdict.workers])
                state = verdict.aggregate
                digests.append(verdict.digest.hex())
            elif subs:
                state = resolve_aggregator("fedavg" if rule == "honest" else rule)(subs, sizes)
            if s.test_every_round or r == s.rounds:
                acc, flip = test_metrics(self.model_fn, state, self.test)
                accs.append(acc)
        return RuleRun(
            rule,
            accs[-1],
            accs,
            flip,
            time.perf_counter() - t0,
            accepted,
            contributions,
            losses,
            rewards if rule.startswith("refiner") else [],
            digests,
        )


@dataclass(frozen=True)
class Cell:
    """One scenario with every rule's run."""

    workers: int
    non_iid: bool
    attack: str  # "none" when fraction == 0
    fraction: float
    attackers: list[int]
    runs: dict[str, RuleRun]

    def attacker_reward_share(self, rule: str = "refiner") -> float:
        """Attackers' share of everything ``rule`` (a Refiner variant) paid to workers over all rounds
        (0 if nothing was paid)."""
        rewards = self.runs[rule].rewards_wei
        total = sum(rewards)
        return sum(rewards[i] for i in self.attackers) / total if total else 0.0

    def attackers_accepted(self, rule: str = "refiner") -> float:
        """Share of the attackers' submissions that ``rule`` accepted, over all rounds."""
        if not self.attackers:
            return 0.0
        acc = self.runs[rule].accepted
        bad = set(self.attackers)
        return sum(len(bad & set(a)) for a in acc) / (len(self.attackers) * len(acc))

    def honest_rejected(self, rule: str = "refiner") -> float:
        """Share of the honest workers' submissions that ``rule`` rejected, over all rounds."""
        honest = set(range(self.workers)) - set(self.attackers)
        acc = self.runs[rule].accepted
        return sum(len(honest - set(a)) for a in acc) / (len(honest) * len(acc)) if honest else 0.0


def run_grid(
    setup: Setup,
    train: Dataset,
    test: Dataset,
    workers: Sequence[int],
    dists: Sequence[bool],
    attack_names: Sequence[str],
    fractions: Sequence[float],
    rules: Sequence[str] = RULES,
    log: Callable[[str], None] = print,
) -> list[Cell]:
    """Every (workers, IID/non-IID, attack, fraction) cell, each with every rule. Fraction 0 is run once
    per (workers, distribution) and reported as attack ``none``."""
    cells: list[Cell] = []
    for n in workers:
        for non_iid in dists:
            t0 = time.perf_counter()
            fed = Federation(setup, train, test, n, non_iid)
            for fraction in fractions:
                fed.forget_later_rounds()
                attackers = fed.attackers(fraction)
                honest_run: RuleRun | None = None
                for attack in attack_names if attackers else ["none"]:
                    runs: dict[str, RuleRun] = {}
                    for rule in rules:
                        if rule == "honest" and honest_run is not None:
                            runs[rule] = honest_run  # does not depend on the attack
                            continue
                        runs[rule] = fed.run(rule, attack, attackers)
                        if rule == "honest":
                            honest_run = runs[rule]
                    cells.append(Cell(n, non_iid, attack, fraction, attackers, runs))
            log(
                f"  {n} workers, {'non-IID' if non_iid else 'IID'}: {time.perf_counter() - t0:.1f} s, "
                f"{fed.trainings} local trainings"
            )
    return cells


# --------------------------------------------------------------------------- the end-to-end cross-check


def cross_check(
    setup: Setup,
    train: Dataset,
    test: Dataset,
    workers: int = 5,
    fraction: float = 0.2,
    attack: str = "shuffled-labels",
) -> dict[str, Any]:
    """The real protocol (:class:`refiner.simulation.Simulation` on the embedded chain, three honest
    validators, encrypted models in a directory store) against the bench's Refiner path with the same
    shards, attackers, seeds and worker names (their addresses): per round, the on-chain consensus
    model's digest and test accuracy, the manifest's contributions and the wei each worker claimed."""
    from refiner.chain import Chain, TaskConfig, demo_account
    from refiner.roles import ValidatorBehaviour, WorkerBehaviour
    from refiner.simulation import Simulation, default_durations
    from refiner.storage import DirectoryStore

    label = "robustness"
    names = [demo_account(f"{label}-worker-{i}").address for i in range(workers)]
    setup = replace(setup, test_every_round=True)
    fed = Federation(setup, train, test, workers, False, names=names)
    attackers = fed.attackers(fraction)
    t0 = time.perf_counter()
    bench = fed.run("refiner", attack, attackers)
    bench_seconds = time.perf_counter() - t0

    behaviour = WorkerBehaviour(attack)
    shards = [
        fed.data(i, "shuffled") if i in attackers and attack == "shuffled-labels" else fed.shards[i]
        for i in range(workers)
    ]
    config = TaskConfig(
        description="",
        worker_reward=setup.worker_reward,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=setup.rounds,
        max_workers=workers,
        committee_size=3,
        epsilon=setup.epsilon,
        durations=default_durations(),
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robustness-store-") as tmp:
        sim = Simulation.deploy(
            Chain.connect(),
            DirectoryStore(Path(tmp)),
            shards,
            [behaviour if i in attackers else WorkerBehaviour.HONEST for i in range(workers)],
            [ValidatorBehaviour.HONEST] * 3,
            config=config,
            model=setup.model,
            lr=setup.lr,
            epochs=setup.epochs,
            stake_unit=ETH,  # 1 ETH stakes and τ = 3 = W: every validator wins one seat
            seed=setup.seed,
            label=label,
        )
        if [w.address for w in sim.workers] != names:
            raise RuntimeError("the simulation's worker addresses are not the bench's names")
        rounds: list[dict[str, Any]] = []
        for r in range(setup.rounds):
            report = sim.run_round(fed.validation, test)
            rounds.append(
                {
                    "round": report.round,
                    "consensus": report.consensus,
                    "chain_digest": model_digest(sim.global_state).hex(),
                    "bench_digest": bench.digests[r],
                    "chain_accuracy": report.accuracy,
                    "bench_accuracy": bench.accuracies[r],
                    "chain_contributions_ppm": [report.contributions.get(a, 0) for a in names],
                    "bench_contributions_ppm": bench.contributions_ppm[r],
                    "chain_rewards_wei": [report.worker_rewards_wei[a] for a in names],
                }
            )
    chain_seconds = time.perf_counter() - t0
    chain_rewards = [sum(rd["chain_rewards_wei"][i] for rd in rounds) for i in range(workers)]
    identical = (
        all(
            rd["chain_digest"] == rd["bench_digest"]
            and rd["chain_contributions_ppm"] == rd["bench_contributions_ppm"]
            for rd in rounds
        )
        and chain_rewards == bench.rewards_wei
    )
    return {
        "workers": workers,
        "attack": attack,
        "attackers": attackers,
        "committee": len(sim.committee),
        "rounds": rounds,
        "chain_rewards_wei": chain_rewards,
        "bench_rewards_wei": bench.rewards_wei,
        "identical": identical,
        "bench_seconds": bench_seconds,
        "chain_seconds": chain_seconds,
    }


# --------------------------------------------------------------------------- reporting


def _pct(x: float) -> str:
    return "—" if math.isnan(x) else f"{100 * x:.2f}"


def markdown_tables(cells: Sequence[Cell], rules: Sequence[str] = RULES, alpha: float | None = None) -> str:
    """One table per (workers, distribution): final test accuracy (%) per rule, and Refiner's verdicts
    and the attackers' share of its rewards."""
    out: list[str] = []
    groups: dict[tuple[int, bool], list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.workers, c.non_iid), []).append(c)
    for (n, non_iid), group in groups.items():
        split = f"non-IID (Dirichlet α = {alpha:g})" if non_iid and alpha else "non-IID" if non_iid else "IID"
        out.append(f"#### {n} workers, {split}\n")
        head = ["attack", "attackers", *[RULE_TITLES[r] for r in rules]]
        head += ["Refiner − honest (pp)", "Refiner accepts attackers / rejects honest"]
        variants = [r for r in rules if r.startswith("refiner")]
        short = {"refiner": "ε", "refiner-loose": "loose", "refiner-adaptive": "adaptive"}
        head += [f"attackers' reward share ({' / '.join(short[r] for r in variants)})"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for c in group:
            acc = {r: c.runs[r].accuracy for r in rules}
            best = max(acc[r] for r in rules if r != "honest")
            row = [c.attack, f"{len(c.attackers)}/{n} ({round(100 * c.fraction)} %)"]
            row += [
                f"**{_pct(acc[r])}**" if r != "honest" and acc[r] == best else _pct(acc[r]) for r in rules
            ]
            row.append(f"{100 * (acc['refiner'] - acc['honest']):+.2f}")
            att = f"{100 * c.attackers_accepted():.0f} %" if c.attackers else "—"
            row.append(f"{att} / {100 * c.honest_rejected():.0f} %")
            shares = " / ".join(f"{100 * c.attacker_reward_share(r):.1f} %" for r in variants)
            row.append(shares if c.attackers else "—")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def flip_table(cells: Sequence[Cell], rules: Sequence[str] = RULES) -> str:
    """The targeted flip's success: share of the test 7s classified as 1 after the last round."""
    rows = [c for c in cells if c.attack in ("targeted-label-flip", "none")]
    if not any(c.attack == "targeted-label-flip" for c in rows):
        return ""
    head = ["workers", "split", "attackers", *[RULE_TITLES[r] for r in rules]]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in rows:
        row = [str(c.workers), "non-IID" if c.non_iid else "IID", f"{round(100 * c.fraction)} %"]
        row += [_pct(c.runs[r].flip_rate) for r in rules]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def goal_summary(cells: Sequence[Cell]) -> list[str]:
    """The issue's goal, per (workers, distribution) and Refiner variant: at every fraction of shuffled-label
    workers no more than 0.5 pp below the honest-only run (being above it is fine), FedAvg degrading,
    attackers earning ≈ 0 (< 0.1 % of what was paid)."""
    lines = []
    groups: dict[tuple[int, bool], list[Cell]] = {}
    for c in cells:
        if c.attack in ("shuffled-labels", "none"):
            groups.setdefault((c.workers, c.non_iid), []).append(c)
    for (n, non_iid), group in groups.items():
        if not any(c.attack == "shuffled-labels" for c in group):
            continue
        worst = max(group, key=lambda c: c.fraction)
        fedavg_drop = worst.runs["honest"].accuracy - worst.runs["fedavg"].accuracy
        for rule in [r for r in RULES if r.startswith("refiner") and r in group[0].runs]:
            diffs = [c.runs[rule].accuracy - c.runs["honest"].accuracy for c in group]
            share = max(c.attacker_reward_share(rule) for c in group)
            ok = min(diffs) >= -0.005 and share < 0.001
            lines.append(
                f"{n} workers {'non-IID' if non_iid else 'IID'}, {RULE_TITLES[rule]}: "
                f"Refiner − honest from {100 * min(diffs):+.2f} to {100 * max(diffs):+.2f} pp up to "
                f"{round(100 * worst.fraction)} % shuffled, "
                f"FedAvg there {100 * fedavg_drop:.2f} pp below honest, attackers' max reward share "
                f"{100 * share:.2f} % → goal {'met' if ok else 'MISSED'}"
            )
    return lines


def plot(cells: Sequence[Cell], path: Path, workers: int = 20, non_iid: bool = False) -> bool:
    """Accuracy vs attacker fraction per rule, one panel per attack (``workers``, IID by default), and a
    last panel with the attackers' share of Refiner's rewards. Returns False (and writes nothing) when
    the grid has no such cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [c for c in cells if c.workers == workers and c.non_iid == non_iid]
    names = [a for a in ATTACKS if any(c.attack == a for c in sel)]
    if not names:
        return False
    base = [c for c in sel if c.attack == "none"]
    panels = len(names) + 1
    cols = min(4, panels)
    rows_ = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.0 * rows_), squeeze=False)
    styles = {
        "honest": "k--",
        "refiner": "C3o-",
        "refiner-loose": "C4o:",
        "refiner-adaptive": "C5D-.",
        "fedavg": "C0s-",
        "median": "C2^-",
        "krum": "C1v-",
    }
    by_attack = {a: sorted(base + [c for c in sel if c.attack == a], key=lambda c: c.fraction) for a in names}
    flat = list(axes.flat)
    for ax, attack in zip(flat, names, strict=False):
        cs = by_attack[attack]
        xs = [100 * c.fraction for c in cs]
        for rule, style in styles.items():
            if rule in cs[0].runs:
                ax.plot(xs, [100 * c.runs[rule].accuracy for c in cs], style, label=RULE_TITLES[rule], ms=4)
        ax.set_title(attack, fontsize=10)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%)")
    ax = flat[len(names)]
    for k, attack in enumerate(names):
        cs = [c for c in by_attack[attack] if c.attackers]
        ax.plot(
            [100 * c.fraction for c in cs],
            [100 * c.attacker_reward_share() for c in cs],
            marker="os^v<>Dp"[k % 8],
            color=f"C{k}",
            label=attack,
            ms=4,
        )
    ax.plot([0, 100], [0, 100], color="0.6", lw=0.8, ls="--", label="= their fraction")
    ax.set_title("attackers' share of Refiner's rewards", fontsize=10)
    ax.set_ylim(-3, 100)
    ax.set_ylabel("reward share (%)")
    ax.legend(fontsize=6, loc="upper left")
    for ax in flat[:panels]:
        ax.set_xlabel("attacking workers (%)")
        ax.set_xlim(-4, 84)
        ax.grid(alpha=0.3)
    for ax in flat[panels:]:
        ax.axis("off")
    flat[0].legend(fontsize=7, loc="lower left")
    split = "non-IID" if non_iid else "IID"
    fig.suptitle(f"MNIST, {workers} workers, {split}: final test accuracy per rule", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def cell_json(c: Cell) -> dict[str, Any]:
    return {
        "workers": c.workers,
        "split": "non-iid" if c.non_iid else "iid",
        "attack": c.attack,
        "fraction": c.fraction,
        "attackers": c.attackers,
        "refiner": {
            r: {
                "attacker_reward_share": c.attacker_reward_share(r),
                "attackers_accepted": c.attackers_accepted(r),
                "honest_rejected": c.honest_rejected(r),
            }
            for r in c.runs
            if r.startswith("refiner")
        },
        "runs": {r: asdict(run) for r, run in c.runs.items()},
    }


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="5 workers, IID, 3 attacks, 0/40/80 %%")
    size.add_argument("--full", action="store_true", help="small CNN and 5 rounds on the whole grid (~1 h)")
    ap.add_argument("--model", help="logistic (default) or small_cnn (--full)")
    ap.add_argument("--rounds", type=int, help="default 3 (5 with --full)")
    ap.add_argument("--shard", type=int, default=500, help="images per worker")
    ap.add_argument("--validation", type=int, default=1000, help="requester's validation images")
    ap.add_argument("--epsilon", type=float, default=1.0, help="qualification threshold (validation loss)")
    ap.add_argument("--loose-epsilon", type=float, default=2.0, help="ε of the 'refiner-loose' rule")
    ap.add_argument(
        "--adaptive-margin", type=float, default=0.1, help="margin of the 'refiner-adaptive' rule (proposed)"
    )
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", help="comma list (default 5,20)")
    ap.add_argument("--attacks", help=f"comma list of {','.join(ATTACKS)}")
    ap.add_argument("--fractions", help="comma list (default 0,0.2,0.4,0.6,0.8)")
    ap.add_argument("--splits", help="comma list of iid,non-iid (default both)")
    ap.add_argument("--no-cross-check", action="store_true", help="skip the run on the embedded chain")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "robustness.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "robustness.png")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # a shared 2-core machine: one thread (see the demo)
    setup = Setup(
        model=args.model or ("small_cnn" if args.full else "logistic"),
        shard=args.shard,
        validation=args.validation,
        rounds=args.rounds or (5 if args.full else 3),
        test_every_round=not args.full,
        lr=args.lr,
        epsilon=args.epsilon,
        loose_epsilon=args.loose_epsilon,
        adaptive_margin=args.adaptive_margin,
        seed=args.seed,
    )
    workers = [int(x) for x in args.workers.split(",")] if args.workers else ([5] if args.quick else [5, 20])
    default_attacks = ["shuffled-labels", "sign-flip", "free-rider"] if args.quick else list(ATTACKS)
    attack_names = args.attacks.split(",") if args.attacks else default_attacks
    if unknown := set(attack_names) - set(ATTACKS):
        ap.error(f"unknown attacks {sorted(unknown)}")
    fractions = (
        [float(x) for x in args.fractions.split(",")]
        if args.fractions
        else ([0.0, 0.4, 0.8] if args.quick else list(FRACTIONS))
    )
    splits = args.splits.split(",") if args.splits else (["iid"] if args.quick else ["iid", "non-iid"])
    dists = [s == "non-iid" for s in splits]

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, {platform.node()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n{setup}",
        flush=True,
    )
    t_all = time.perf_counter()
    train, test = load_mnist()
    print("grid:", flush=True)
    cells = run_grid(
        setup, train, test, workers, dists, attack_names, fractions, log=lambda s: print(s, flush=True)
    )
    grid_seconds = time.perf_counter() - t_all
    print()
    print(markdown_tables(cells, alpha=setup.alpha))
    flips = flip_table(cells)
    if flips:
        print("Targeted flip: share of the test 7s classified as 1 (%)\n")
        print(flips)
    for line in goal_summary(cells):
        print(line)

    check: dict[str, Any] | None = None
    if not args.no_cross_check:
        print("\nend-to-end cross-check: the real protocol on the embedded chain vs the bench's Refiner path")
        check = cross_check(setup, train, test)
        for rd in check["rounds"]:
            print(
                f"  round {rd['round']}: chain {rd['chain_digest'][:16]}"
                f" acc {100 * rd['chain_accuracy']:.2f} %"
                f" | bench {rd['bench_digest'][:16]} acc {100 * rd['bench_accuracy']:.2f} %"
                f" | contributions equal: {rd['chain_contributions_ppm'] == rd['bench_contributions_ppm']}"
            )
        print(
            f"  rewards (wei) chain {check['chain_rewards_wei']}\n"
            f"                bench {check['bench_rewards_wei']}\n"
            f"  identical: {check['identical']} (bench {check['bench_seconds']:.1f} s, "
            f"chain {check['chain_seconds']:.1f} s)"
        )
    total = time.perf_counter() - t_all
    print(f"\ngrid {grid_seconds:.0f} s, total {total:.0f} s")

    for non_iid in sorted(set(dists)):
        path = args.plot.with_name(f"{args.plot.stem}-non-iid{args.plot.suffix}") if non_iid else args.plot
        if plot(cells, path, workers=max(workers), non_iid=non_iid):
            print(f"plot: {path}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "python": sys.version.split()[0], "torch": torch.__version__},
        "setup": asdict(setup),
        "grid_seconds": grid_seconds,
        "total_seconds": total,
        "cells": [cell_json(c) for c in cells],
        "cross_check": check,
        "goal": goal_summary(cells),
    }
    args.json.write_text(json.dumps(payload, indent=1))
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
