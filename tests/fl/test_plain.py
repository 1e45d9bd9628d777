from __future__ import annotations

import pytest

from refiner.fl.data import shuffle_labels, synthetic_dataset
from refiner.fl.models import initial_state, logistic
from refiner.fl.plain import RoundStats, run_fedavg, worker_config
from refiner.fl.training import TrainingConfig


def test_plain_fedavg_learns_and_filters_bad_workers() -> None:
    shards = [synthetic_dataset(n, seed=s, noise=1.0) for s, n in enumerate([200, 300, 400])]
    shards.append(shuffle_labels(synthetic_dataset(300, seed=9, noise=1.0), seed=0))
    validation, test = synthetic_dataset(300, seed=20, noise=1.0), synthetic_dataset(500, seed=21, noise=1.0)
    seen: list[RoundStats] = []
    stats = run_fedavg(
        logistic,
        shards,
        validation,
        test,
        rounds=2,
        cfg=TrainingConfig(lr=0.05),
        epsilon=1.0,
        on_round=seen.append,
    )
    assert seen == stats and [s.round for s in stats] == [1, 2]
    assert [s.accepted for s in stats] == [3, 3]
    assert stats[-1].test_accuracy > 0.9
    assert all(s.seconds >= s.train_seconds + s.eval_seconds - 1e-6 for s in stats)
    unfiltered = run_fedavg(logistic, shards, None, test, rounds=1, cfg=TrainingConfig(lr=0.05))
    assert unfiltered[0].accepted == 4 and unfiltered[0].contributions_ppm == ()
    refined = run_fedavg(
        logistic, shards, validation, test, 2, TrainingConfig(lr=0.05), 1.0, contributions=True
    )
    assert [(s.test_loss, s.accepted) for s in refined] == [(s.test_loss, s.accepted) for s in stats]
    assert all(len(s.contributions_ppm) == 4 and s.contributions_ppm[3] == 0 for s in refined)
    with pytest.raises(ValueError, match="epsilon"):
        run_fedavg(logistic, shards, validation, test, 1, TrainingConfig(), contributions=True)


def test_plain_fedavg_is_reproducible_and_seeds_workers_apart() -> None:
    shards = [synthetic_dataset(100, seed=s) for s in range(2)]
    test = synthetic_dataset(200, seed=5)
    cfg = TrainingConfig(lr=0.05, seed=3)
    a = run_fedavg(logistic, shards, None, test, 1, cfg, initial=initial_state(logistic, 1))
    b = run_fedavg(logistic, shards, None, test, 1, cfg, initial=initial_state(logistic, 1))
    assert (a[0].test_loss, a[0].test_accuracy) == (b[0].test_loss, b[0].test_accuracy)
    seeds = {worker_config(cfg, r, w).seed for r in range(1, 4) for w in range(5)}
    assert len(seeds) == 15
    with pytest.raises(ValueError, match="validation"):
        run_fedavg(logistic, shards, None, test, 1, cfg, epsilon=1.0)
