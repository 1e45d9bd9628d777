"""The committee's aggregate is checked before it is adopted, and claimed sample counts are capped."""

from __future__ import annotations

import pytest
import torch

from refiner.adversary.transforms import PERMUTABLE_LAYERS, permute_hidden_units
from refiner.fl.data import Dataset, split_mnist
from refiner.fl.evaluation import evaluate
from refiner.fl.models import State, initial_state, small_cnn
from refiner.fl.round_evaluation import SAMPLE_CAP, capped_samples, evaluate_round
from refiner.fl.training import TrainingConfig, train_local
from refiner.units import quantize
from tests.fl.tiny import VALIDATION, Bias2, state

Permuted = tuple[State, list[State], State, Dataset]


@pytest.fixture(scope="module")
def permuted_round(mnist: tuple[Dataset, Dataset]) -> Permuted:
    """A small CNN one round in, three honest 500-image updates and the third one's units permuted."""
    val, shards = split_mnist(mnist[0], [1000, 500, 500, 500], 500, None, 0)
    start = train_local(
        small_cnn, initial_state(small_cnn, 0), shards[0], TrainingConfig(epochs=1, lr=0.1, seed=1)
    )
    honest = [
        train_local(small_cnn, start, sh, TrainingConfig(epochs=1, lr=0.1, seed=2 + i))
        for i, sh in enumerate(shards[1:])
    ]
    return start, honest, permute_hidden_units(honest[2], PERMUTABLE_LAYERS["small_cnn"], seed=3), val


def test_permuted_model_has_the_honest_loss(permuted_round: Permuted) -> None:
    _, honest, permuted, val = permuted_round
    assert quantize(evaluate(small_cnn, permuted, val).loss) == quantize(
        evaluate(small_cnn, honest[2], val).loss
    )
    assert not torch.equal(permuted["conv1.weight"], honest[2]["conv1.weight"])


def test_permuted_update_cannot_drag_the_aggregate_down(permuted_round: Permuted) -> None:
    start, honest, permuted, val = permuted_round
    updates = [("0xA1", honest[0], 500), ("0xA2", honest[1], 500), ("0xA3", permuted, 1200)]
    ev = evaluate_round(small_cnn, start, updates, val, 1.0)
    start_loss = evaluate(small_cnn, start, val).loss
    assert all(w.accepted for w in ev.workers)  # it passes ε: only the aggregate check can catch it
    assert ev.aggregate_rule == "median"
    assert ev.loss < start_loss
    assert ev.workers[2].contribution_ppm < 0  # and leave-one-out pays it nothing
    honest_only = evaluate_round(small_cnn, start, [*updates[:2], ("0xA3", honest[2], 500)], val, 1.0)
    assert honest_only.aggregate_rule == "fedavg"
    assert ev.loss < honest_only.loss + 0.05


def test_with_two_updates_the_best_update_is_the_fallback(permuted_round: Permuted) -> None:
    start, honest, permuted, val = permuted_round
    ev = evaluate_round(small_cnn, start, [("0xA1", honest[0], 500), ("0xA3", permuted, 1200)], val, 1.0)
    assert ev.aggregate_rule == "best-update"
    assert ev.loss <= min(evaluate(small_cnn, s, val).loss for s in (start, honest[0], permuted))


def test_capped_samples() -> None:
    assert capped_samples([]) == []
    assert capped_samples([6000, 8000, 10_000, 12_000, 14_000]) == [6000, 8000, 10_000, 12_000, 14_000]
    assert capped_samples([100, 100, 100_000]) == [100, 100, SAMPLE_CAP * 100]
    assert capped_samples([100, 10**9]) == [100, SAMPLE_CAP * 100]  # the lower median: exact integers


def test_an_inflated_claim_weighs_at_most_the_cap() -> None:
    # two updates: b = (1, 0) claims 1 sample, (0, 0) claims 10**6; uncapped FedAvg would be ≈ (0, 0)
    updates = [("0xA1", state(1.0, 0.0), 1), ("0xA2", state(0.0, 0.0), 10**6)]
    ev = evaluate_round(Bias2, state(0.0, 0.0), updates, VALIDATION, 10.0)
    assert ev.aggregate_rule == "fedavg"
    assert float(ev.aggregate["b"][0]) == pytest.approx(1 / (1 + SAMPLE_CAP))
