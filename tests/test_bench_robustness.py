"""Smoke tests of bench/robustness.py and bench/contributions.py (not a package: loaded by file path), so
that the scripts behind docs/robustness.md cannot silently rot. Tiny grids: logistic model, small shards."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from refiner.fl.data import Dataset

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


rb = _load("robustness")
cb = _load("contributions")


def test_rewards_follow_claim_reward() -> None:
    # accepted with c > 0 share workerReward pro rata (floor); rejected or c ≤ 0 get nothing
    assert rb.paid_rewards([30, 10, -5, 60], [True, True, True, False], 100) == [75, 25, 0, 0]
    assert rb.paid_rewards([0, -1], [True, True], 100) == [0, 0]


def test_robustness_grid_on_a_tiny_configuration(mnist: tuple[Dataset, Dataset], tmp_path: Path) -> None:
    train, test = mnist
    setup = rb.Setup(shard=300, validation=300, rounds=2, epsilon=1.5)
    cells = rb.run_grid(setup, train, test, [5], [False], ["sign-flip"], [0.0, 0.8], log=lambda _: None)
    assert [(c.attack, len(c.attackers)) for c in cells] == [("none", 0), ("sign-flip", 4)]
    for c in cells:
        assert set(c.runs) == set(rb.RULES)
        for run in c.runs.values():
            assert len(run.accuracies) == 2 and 0 <= run.accuracy <= 1
    clean, attacked = cells
    # without attackers Refiner accepts everyone here, and its aggregate is FedAvg's, bit for bit
    assert (
        clean.runs["refiner"].accuracies == clean.runs["fedavg"].accuracies == clean.runs["honest"].accuracies
    )
    # 80 % sign-flippers wreck FedAvg; Refiner's ε-filter keeps it learning and pays them nothing
    assert attacked.runs["fedavg"].accuracy + 0.3 < attacked.runs["refiner"].accuracy
    assert attacked.attacker_reward_share() == 0.0
    assert sum(attacked.runs["refiner"].rewards_wei) > 0

    table = rb.markdown_tables(cells)
    assert "| sign-flip | 4/5 (80 %) |" in table
    assert rb.goal_summary(cells) == []  # no shuffled-label cells in this grid
    assert rb.plot(cells, tmp_path / "r.png", workers=5)
    assert (tmp_path / "r.png").stat().st_size > 0
    json.dumps([rb.cell_json(c) for c in cells])


def test_bench_refiner_path_is_the_protocol(mnist: tuple[Dataset, Dataset]) -> None:
    """One round of the real protocol on the embedded chain lands on the bench's aggregate and rewards."""
    train, test = mnist
    check = rb.cross_check(rb.Setup(shard=200, validation=300, rounds=1), train, test)
    assert check["attackers"] and check["identical"], check


def test_contributions_on_a_tiny_configuration(mnist: tuple[Dataset, Dataset]) -> None:
    train, test = mnist
    workers = (
        cb.WorkerSpec("300", 300),
        cb.WorkerSpec("500", 500),
        cb.WorkerSpec("300, half shuffled", 300, 0.5),
        cb.WorkerSpec("free-rider", 300, kind="free-rider"),
        cb.WorkerSpec("copy of 500", 500, kind="duplicate", copy_of=1),
    )
    c = cb.compare(train, test, workers, model="logistic", rounds=2, validation_size=300)
    assert set(c.measures) == {"leave-one-out", "gtg-shapley"}
    assert c.label_quality[0] == 1.0 and c.label_quality[4] == 1.0 and math.isnan(c.label_quality[3])
    assert 0.4 < c.label_quality[2] < 0.7
    for m in c.measures.values():
        assert len(m.rewards_wei) == 5 and 0 < sum(m.rewards_wei) <= 2 * cb.ETH
        assert len(m.evaluations) == len(m.seconds) == 2
    assert c.measures["gtg-shapley"].methods[0] in ("exact", "sampled", "round-truncated")
    assert not c.accepted[0][3]  # the free-rider's untrained initial model is rejected in round 1
    text = cb.report([c])
    assert "free-rider" in text and "Spearman" in text
    json.dumps(cb.to_json(c))


def test_rank_correlations() -> None:
    assert cb.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert cb.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert cb.spearman([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)  # ties get their average rank
    assert math.isnan(cb.pearson([1, 2, 3], [4, 4, 4]))


ib = _load("incentives")


def test_incentives_grid_on_a_tiny_configuration(mnist: tuple[Dataset, Dataset]) -> None:
    """bench/incentives.py's quick core: the trusted-data measure pays the sign-flipper and the
    extrapolator nothing while the honest workers are paid every round in the order of their data."""
    s = ib.Setting("logistic", [200, 300, 400], None, 3, None, 300, 0.1, 1)  # each measure's own ε
    cells = ib.run_grid(
        s, ["none", "sign-flip", "extrapolator"], [0.34], ib.MEASURES, [0], mnist, log=lambda _: None
    )
    assert {(c.attack, c.measure) for c in cells} == {
        (a, m) for a in ("none", "sign-flip", "extrapolator") for m in ib.MEASURES
    }
    for name in ("trusted-data", "trusted-data@1"):  # without ε (the default) and with ε = 1
        trusted = {c.attack: c for c in cells if c.measure == name}
        assert trusted["sign-flip"].attack_pay == 0.0 and trusted["extrapolator"].attack_pay == 0.0
        assert trusted["none"].trainings == 5  # the reference, its long run, and the two halves' runs
    default = {c.attack: c for c in cells if c.measure == "trusted-data"}
    assert default["none"].min_paid_rounds == 1.0 and default["none"].spearman == 1.0
    assert all(c.evaluations > 0 for c in cells)
    assert all(0 <= c.accuracy <= 1 and 0 <= c.honest_accuracy <= 1 for c in cells)
    text = ib.table(cells)
    assert text.count("\n") == 2 + len(cells) and "| iid | extrapolator | 33% | trusted-data |" in text
