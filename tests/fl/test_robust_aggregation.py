from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from refiner.fl.aggregation import (
    AGGREGATORS,
    FedAvg,
    Krum,
    Median,
    coordinate_median,
    default_byzantine,
    fedavg,
    krum,
    krum_scores,
    krum_select,
    resolve_aggregator,
    squared_distances,
)
from refiner.fl.data import synthetic_dataset
from refiner.fl.models import State, initial_state, logistic, model_digest
from refiner.fl.plain import run_fedavg, scale_update
from refiner.fl.training import TrainingConfig


def st(*values: float, steps: int = 0) -> State:
    return {"w": torch.tensor(values, dtype=torch.float32), "steps": torch.tensor(steps)}


def test_median_of_three_and_four_values_by_hand() -> None:
    three = [st(1, 5, -2, steps=7), st(3, -1, -2), st(2, 0, 10)]
    m = coordinate_median(three)
    assert m["w"].tolist() == [2, 0, -2] and m["w"].dtype == torch.float32
    assert int(m["steps"]) == 7  # non-floating tensors come from the first state
    four = [st(1, 5, 0.1), st(3, -1, 0.2), st(2, 0, 0.3), st(10, 100, 0.4)]
    m4 = coordinate_median(four)["w"]
    # even n: the mean of the two middle values, computed in float64 and cast once
    a, b = torch.tensor([0.2, 0.3]).double()
    expected = [2.5, 2.5, float(((a + b) / 2).float())]
    assert m4.tolist() == pytest.approx([2.5, 2.5, 0.25]) and m4.tolist() == expected
    for perm in itertools.permutations(four):  # sorting is exact: any input order, the same bits
        assert torch.equal(coordinate_median(list(perm))["w"], m4)
    assert torch.equal(Median()(three, [1, 1, 1])["w"], m["w"])
    with pytest.raises(ValueError, match="positive"):
        Median()(three, [1, 0, 1])


def test_krum_scores_by_hand_and_against_brute_force() -> None:
    # n = 5, f = 1: each score sums the n − f − 2 = 2 smallest squared distances
    pts = [st(0, 0), st(1, 0), st(0, 2), st(1, 1), st(9, 9)]
    scores = krum_scores(pts, f=1)
    assert scores == pytest.approx([1 + 2, 1 + 1, 2 + 4, 1 + 2, 128 + 130])
    assert krum_select(pts, f=1) == [1]
    assert krum(pts, f=1)["w"].tolist() == [1, 0]
    rng = np.random.default_rng(0)
    xs = [{"a": torch.tensor(rng.normal(size=(3, 4)), dtype=torch.float32)} for _ in range(7)]
    d = squared_distances(xs)
    for i, j in itertools.product(range(7), repeat=2):
        ref = float(((xs[i]["a"].double() - xs[j]["a"].double()) ** 2).sum())
        assert d[i][j] == pytest.approx(ref, rel=1e-12)
    k = 7 - default_byzantine(7) - 2
    assert default_byzantine(7) == 2 and k == 3
    assert krum_scores(xs) == pytest.approx([sum(sorted(d[i][:i] + d[i][i + 1 :])[:k]) for i in range(7)])
    assert krum_scores(xs[:1]) == [0.0] and krum_select(xs[:2]) == [0]  # ties go to the lower index


def test_krum_picks_the_inlier_cluster_with_f_byzantine() -> None:
    g = torch.Generator().manual_seed(1)
    inliers = [{"w": 1.0 + 0.05 * torch.randn(50, generator=g)} for _ in range(7)]
    byzantine = [{"w": torch.full((50,), 30.0)}, {"w": torch.full((50,), -30.0)}, {"w": 5 * torch.ones(50)}]
    states = inliers[:3] + byzantine + inliers[3:]  # n = 10, f = 3: n ≥ 2f + 3
    chosen = krum_select(states, f=3)
    assert len(chosen) == 1 and chosen[0] not in (3, 4, 5)
    multi = krum_select(states, f=3, m=6)
    assert len(multi) == 6 and not set(multi) & {3, 4, 5}
    agg = Krum(f=3, m=6)(states, [1] * 10)
    assert torch.equal(agg["w"], fedavg([states[i] for i in multi], [1] * 6)["w"])
    assert float((agg["w"] - 1).abs().max()) < 0.1


def _honest_and_attacker(attack: str) -> tuple[list[State], list[int], torch.Tensor]:
    """Ten honest updates around g + u and one attacker; returns states, samples and g + u."""
    g = torch.Generator().manual_seed(7)
    base, update = torch.randn(1000, generator=g), 0.1 * torch.randn(1000, generator=g)
    honest = [{"w": base + update + 0.01 * torch.randn(1000, generator=g)} for _ in range(10)]
    samples = [100] * 11
    if attack == "sign-flip":  # a boosted, sign-flipped update
        bad = {"w": base - 10 * update}
    elif attack == "scaled":
        bad = {"w": base + 50 * update}
    else:  # honest-looking weights, but the attacker claims a huge data set
        bad, samples[-1] = {"w": base - update}, 100_000
    return [*honest, bad], samples, base + update


@pytest.mark.parametrize("attack", ["sign-flip", "scaled", "inflated-samples"])
def test_one_outlier_moves_fedavg_far_and_median_and_krum_barely(attack: str) -> None:
    states, samples, target = _honest_and_attacker(attack)
    honest_mean = fedavg(states[:-1], samples[:-1])["w"]
    err = {
        name: float((resolve_aggregator(name)(states, samples)["w"] - target).norm())
        for name in ("fedavg", "median", "krum")
    }
    clean = float((honest_mean - target).norm())
    scale = float((target - states[-1]["w"]).norm()) / 11  # FedAvg's pull by an unweighted attacker
    assert err["fedavg"] > 0.5 * scale and err["fedavg"] > 20 * clean, err
    assert err["median"] < 3 * clean + 0.05 * scale, err
    worst_honest = max(float((s["w"] - target).norm()) for s in states[:-1])
    assert err["krum"] <= worst_honest, err  # Krum returns one honest update


def _big_states() -> list[State]:
    g = torch.Generator().manual_seed(3)
    return [
        {
            "a.weight": torch.randn(300, 257, generator=g),
            "a.bias": torch.randn(257, generator=g),
            "b": torch.randn(70_001, generator=g).to(torch.float64),
            "count": torch.tensor(5 + i),
        }
        for i in range(6)
    ]


def _run_all(states: list[State]) -> dict[str, bytes | list[float]]:
    samples = [100, 250, 17, 3000, 42, 999]
    out: dict[str, bytes | list[float]] = {
        name: model_digest(resolve_aggregator(name)(states, samples)) for name in sorted(AGGREGATORS)
    }
    out["krum-4"] = model_digest(Krum(f=1, m=4)(states, samples))
    out["median-5"] = model_digest(coordinate_median(states[:5]))
    out["scores"] = krum_scores(states, f=1)
    return out


def test_aggregators_do_not_depend_on_the_thread_count() -> None:
    states = _big_states()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run_all(states)
        torch.set_num_threads(2)
        two = _run_all(states)
    finally:
        torch.set_num_threads(before)
    assert one == two
    assert one["fedavg"] == model_digest(fedavg(states, [100, 250, 17, 3000, 42, 999]))


def test_registry_and_interface() -> None:
    assert sorted(AGGREGATORS) == ["fedavg", "krum", "median"]
    assert isinstance(resolve_aggregator("fedavg"), FedAvg)
    k = resolve_aggregator("krum", f=2, m=3)
    assert isinstance(k, Krum) and (k.f, k.m) == (2, 3) and repr(k) == "Krum(f=2, m=3)"
    assert resolve_aggregator(k) is k
    with pytest.raises(ValueError, match="unknown aggregator"):
        resolve_aggregator("trimmed-mean")
    with pytest.raises(ValueError, match="bad options"):
        resolve_aggregator("median", f=1)
    with pytest.raises(ValueError):
        Krum(m=0)
    with pytest.raises(ValueError):
        krum_scores([st(1), st(2)], f=-1)
    with pytest.raises(ValueError):
        coordinate_median([st(1), {"v": torch.zeros(1)}])


def test_plain_loop_runs_every_rule_on_the_same_data_under_attack() -> None:
    shards = [synthetic_dataset(150, seed=s, noise=1.0) for s in range(5)]
    test = synthetic_dataset(400, seed=30, noise=1.0)
    cfg, init = TrainingConfig(lr=0.05), initial_state(logistic, 2)
    acc = {}
    for rule in ("fedavg", "median", "krum"):  # worker 4 submits a sign-flipped update, boosted 8x
        stats = run_fedavg(
            logistic,
            shards,
            None,
            test,
            1,
            cfg,
            initial=init,
            aggregator=rule,
            byzantine={4: scale_update(-8)},
        )
        acc[rule] = stats[-1].test_accuracy
    assert acc["median"] > 0.9 and acc["krum"] > 0.9 and acc["fedavg"] < 0.5, acc
    honest = run_fedavg(logistic, shards, None, test, 1, cfg, initial=init, aggregator=FedAvg())
    same = run_fedavg(logistic, shards, None, test, 1, cfg, initial=init)
    assert honest[0].test_loss == same[0].test_loss
    with pytest.raises(ValueError, match="byzantine"):
        run_fedavg(logistic, shards, None, test, 1, cfg, byzantine={5: scale_update(-1)})
