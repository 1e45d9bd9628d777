from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from refiner.fl.data import Dataset, shuffle_labels, split_mnist, subset
from refiner.fl.models import initial_state, model_digest, serialize, small_cnn
from refiner.fl.round_evaluation import epsilon_ppm, evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.units import MAX_PPM, quantize
from tests.fl.tiny import LABELS, VALIDATION, Bias2, loss, state

Round = tuple[dict[str, torch.Tensor], list[tuple[str, dict[str, torch.Tensor], int]], Dataset]
W1, W2, W3 = state(1.0, 0.0), state(0.0, 1.0), state(0.0, 0.0)
G = state(0.0, 0.0)


def test_quantize() -> None:
    assert quantize(0.0) == 0
    assert quantize(1.0) == 1_000_000
    assert quantize(0.1234567) == 123_460  # 1e-5 grid, in ppm
    assert quantize(0.1234549) == 123_450
    assert quantize(-0.0000151) == -20
    assert quantize(2.302586) == 2_302_590
    assert quantize(math.nan) == MAX_PPM and quantize(math.inf) == MAX_PPM and quantize(-math.inf) == -MAX_PPM
    assert quantize(1e300) == MAX_PPM
    assert epsilon_ppm(1.0) == 1_000_000 and epsilon_ppm(0.5) == 500_000
    with pytest.raises(ValueError):
        epsilon_ppm(math.inf)


def test_round_by_hand() -> None:
    # local losses: w1 0.563262, w2 1.063262, w3 0.693147 -> with eps = 1.0, w2 is rejected
    updates = [("0xA1", W1, 1), ("0xA2", W2, 1), ("0xA3", W3, 2)]
    r = evaluate_round(Bias2, G, updates, VALIDATION, 1.0)
    assert [w.loss_ppm for w in r.workers] == [563_260, 1_063_260, 693_150]
    assert [w.accepted for w in r.workers] == [True, False, True]
    # w = (1·w1 + 2·w3)/3 = [1/3, 0]
    full = loss(1 / 3, 0, LABELS)
    assert r.loss == pytest.approx(full, abs=1e-6) and r.loss_ppm == quantize(full) == 623_640
    assert r.aggregate["b"].tolist() == pytest.approx([1 / 3, 0])
    assert r.digest == model_digest(r.aggregate)
    assert (r.correct, r.n, r.accuracy_ppm) == (3, 4, 750_000)
    c1 = loss(0, 0, LABELS) - full  # without w1 only w3 remains: +0.069508
    c3 = loss(1, 0, LABELS) - full  # without w3 only w1 remains: -0.060377
    assert r.fixed_results() == [
        ("0xA1", True, 1, quantize(c1)),
        ("0xA2", False, 1, 0),
        ("0xA3", True, 2, quantize(c3)),
    ]
    assert quantize(c1) == 69_510 and quantize(c3) == -60_380
    assert r.workers[1].contribution is None and r.accepted == ["0xA1", "0xA3"]


def test_round_with_one_or_no_qualified_worker() -> None:
    one = evaluate_round(Bias2, G, [("0xA1", W1, 3), ("0xA2", W2, 1)], VALIDATION, 0.6)
    assert one.fixed_results() == [
        ("0xA1", True, 3, quantize(loss(0, 0, LABELS) - loss(1, 0, LABELS))),
        ("0xA2", False, 1, 0),
    ]
    none = evaluate_round(Bias2, W2, [("0xA1", W1, 3), ("0xA2", W2, 1)], VALIDATION, 0.5)
    assert [w.accepted for w in none.workers] == [False, False]
    assert none.digest == model_digest(W2) and torch.equal(none.aggregate["b"], W2["b"])
    assert none.loss_ppm == quantize(loss(0, 1, LABELS))
    empty = evaluate_round(Bias2, G, [], VALIDATION, 1.0)
    assert empty.fixed_results() == [] and empty.digest == model_digest(G)


def test_round_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_round(Bias2, G, [("0xab", W1, 1), ("0xAB", W2, 1)], VALIDATION, 1.0)
    with pytest.raises(ValueError, match="positive"):
        evaluate_round(Bias2, G, [("0xab", W1, 0)], VALIDATION, 1.0)
    with pytest.raises(ValueError):
        evaluate_round(Bias2, G, [("0xab", {"c": torch.zeros(2)}, 1)], VALIDATION, 1.0)


# ----------------------------------------------------------------- real MNIST, small CNN


@pytest.fixture(scope="module")
def mnist_round(mnist: tuple[Dataset, Dataset]) -> Round:
    """Three honest workers, one with shuffled labels and one free rider, after one epoch each."""
    train, _ = mnist
    validation, shards = split_mnist(train, [2000, 1500, 2500, 2000], validation_size=1000, seed=11)
    g = initial_state(small_cnn, 0)
    cfg = TrainingConfig(lr=0.1)
    updates = [
        (f"0x{i + 1:040x}", train_local(small_cnn, g, shard, TrainingConfig(lr=0.1, seed=i)), len(shard))
        for i, shard in enumerate(shards[:3])
    ]
    bad = shuffle_labels(shards[3], seed=1)
    updates.append((f"0x{4:040x}", train_local(small_cnn, g, bad, cfg), len(bad)))
    updates.append((f"0x{5:040x}", free_ride(g), 1000))
    return g, updates, validation


def test_shuffled_labels_and_free_rider_are_rejected(mnist_round: Round) -> None:
    g, updates, validation = mnist_round
    r = evaluate_round(small_cnn, g, updates, validation, 1.0)
    losses = [w.loss for w in r.workers]
    assert [w.accepted for w in r.workers] == [True, True, True, False, False], losses
    assert max(losses[:3]) < 0.6 and min(losses[3:]) > 2.0
    assert r.accuracy > 0.85
    assert all(w.contribution_ppm == 0 for w in r.workers[3:])


def test_thread_count_does_not_change_the_results(mnist_round: Round, tmp_path: Path) -> None:
    g, updates, full_validation = mnist_round
    validation = subset(full_validation, 600)  # keeps the two child processes quick on a busy machine
    safetensors.torch.save_file({"x": validation.x, "y": validation.y}, tmp_path / "validation.safetensors")
    (tmp_path / "global.st").write_bytes(serialize(g))
    for address, s, n in updates:
        (tmp_path / f"update-{address}-{n}.st").write_bytes(serialize(s))
    child = Path(__file__).with_name("round_child.py")
    outputs = []
    for threads in (1, 2):
        done = subprocess.run(
            [sys.executable, str(child), str(threads), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        outputs.append(json.loads(done.stdout))
    one, two = outputs
    assert (one["threads"], two["threads"]) == (1, 2)
    for key in ("fixed", "losses_ppm", "accuracy_ppm", "loss_ppm", "digest"):
        assert one[key] == two[key], key
    assert [a for _, a, _, _ in one["fixed"]] == [True, True, True, False, False]
    reverse = evaluate_round(small_cnn, g, updates[::-1], validation, 1.0)  # input order is irrelevant
    assert [list(t) for t in reverse.fixed_results()[::-1]] == one["fixed"]
    assert reverse.digest.hex() == one["digest"]
    in_process = evaluate_round(small_cnn, g, updates, validation, 1.0)
    assert [list(t) for t in in_process.fixed_results()] == one["fixed"]
    assert in_process.digest.hex() == one["digest"]
