from __future__ import annotations

import pytest
import torch

from refiner.fl.aggregation import fedavg
from refiner.fl.data import synthetic_dataset
from refiner.fl.evaluation import evaluate
from refiner.fl.models import initial_state, logistic, model_digest
from refiner.fl.training import TrainingConfig, _batches, free_ride, train_local


def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    total = sum(float(((a[k] - b[k]) ** 2).sum()) for k in a)
    return float(total**0.5)


def test_local_training_learns_and_is_deterministic() -> None:
    data = synthetic_dataset(600, seed=1)
    g = initial_state(logistic, 0)
    frozen = {k: v.clone() for k, v in g.items()}
    cfg = TrainingConfig(epochs=1, batch_size=32, lr=0.1, seed=7)
    a = train_local(logistic, g, data, cfg)
    assert all(torch.equal(g[k], frozen[k]) for k in g)  # the global model is not modified
    assert model_digest(train_local(logistic, g, data, cfg)) == model_digest(a)
    assert model_digest(train_local(logistic, g, data, TrainingConfig(lr=0.1, seed=8))) != model_digest(a)
    held_out = synthetic_dataset(500, seed=2)
    assert evaluate(logistic, a, held_out).loss < 0.5 * evaluate(logistic, g, held_out).loss
    assert evaluate(logistic, a, held_out).accuracy > 0.9


def test_batches_merge_the_remainder() -> None:
    sizes = [len(b) for b in _batches(torch.arange(100), 32)]
    assert sizes == [32, 32, 36]
    assert [len(b) for b in _batches(torch.arange(96), 32)] == [32, 32, 32]
    assert [len(b) for b in _batches(torch.arange(10), 32)] == [10]
    assert torch.equal(torch.cat(_batches(torch.arange(100), 32)), torch.arange(100))


def test_training_leaves_global_rng_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    train_local(logistic, initial_state(logistic, 0), synthetic_dataset(64, seed=1), TrainingConfig(seed=1))
    assert torch.equal(torch.rand(2), expected)


def test_fedprox_differs_from_fedavg_and_stays_closer() -> None:
    data = synthetic_dataset(400, seed=3)
    g = initial_state(logistic, 0)
    avg = train_local(logistic, g, data, TrainingConfig(lr=0.1, seed=1, epochs=2))
    prox = train_local(logistic, g, data, TrainingConfig(lr=0.1, seed=1, epochs=2, mu=1.0))
    assert model_digest(avg) != model_digest(prox)
    assert distance(prox, g) < distance(avg, g)
    zero_mu = train_local(logistic, g, data, TrainingConfig(lr=0.1, seed=1, epochs=2, mu=0.0))
    assert model_digest(zero_mu) == model_digest(avg)


def test_free_ride_returns_an_untrained_copy() -> None:
    g = initial_state(logistic, 0)
    fr = free_ride(g)
    assert model_digest(fr) == model_digest(g)
    fr["fc.bias"].add_(1.0)
    assert model_digest(fr) != model_digest(g)  # a copy, not the same tensors


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        TrainingConfig(lr=0.0)
    with pytest.raises(ValueError):
        TrainingConfig(mu=-1.0)
    with pytest.raises(ValueError, match="empty"):
        train_local(logistic, initial_state(logistic, 0), synthetic_dataset(0, seed=0), TrainingConfig())


# ----------------------------------------------------------------- aggregation


def test_fedavg_on_hand_made_tensors() -> None:
    a = {"w": torch.tensor([1.0, 2.0, -4.0]), "b": torch.tensor(0.5), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0, 0.0]), "b": torch.tensor(-0.5), "n": torch.tensor(9)}
    avg = fedavg([a, b], [1, 3])
    assert torch.equal(avg["w"], torch.tensor([2.5, 5.0, -1.0]))
    assert torch.equal(avg["b"], torch.tensor(-0.25))
    assert avg["w"].dtype == torch.float32
    assert torch.equal(avg["n"], torch.tensor(3))  # non-floating tensors come from the first state
    assert list(avg) == ["b", "n", "w"]
    assert torch.equal(fedavg([a], [7])["w"], a["w"])
    # 1/3 weights: float64 accumulation, one division, one rounding to float32
    third = fedavg([{"x": torch.tensor([1.0])}] * 3, [1, 1, 1])
    assert torch.equal(third["x"], torch.tensor([1.0]))
    odd = fedavg([{"x": torch.tensor([0.1])}, {"x": torch.tensor([0.2])}], [2, 1])
    expected = (2 * float(torch.tensor(0.1)) + float(torch.tensor(0.2))) / 3
    assert torch.equal(odd["x"], torch.tensor([expected], dtype=torch.float32))


def test_fedavg_refuses_mismatches() -> None:
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="names"):
        fedavg([a, {"v": torch.zeros(2)}], [1, 1])
    with pytest.raises(ValueError, match="'w'"):
        fedavg([a, {"w": torch.zeros(3)}], [1, 1])
    with pytest.raises(ValueError, match="positive integers"):
        fedavg([a, a], [1, 0])
    with pytest.raises(ValueError, match="2 states but 1 weights"):
        fedavg([a, a], [1])
    with pytest.raises(ValueError, match="no states"):
        fedavg([], [])
