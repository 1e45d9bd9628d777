from __future__ import annotations

import pytest

from refiner.fl.evaluation import evaluate
from refiner.fl.measures import LeaveOneOut, leave_one_out_states
from tests.fl.tiny import LABELS, VALIDATION, Bias2, loss, state

# Three workers: w1 favours class 0 (the majority of the validation labels), w2 class 1, w3 neither.
W1, W2, W3 = state(1.0, 0.0), state(0.0, 1.0), state(0.0, 0.0)
N = [1, 1, 2]


def test_leave_one_out_by_hand() -> None:
    # w = (1·[1,0] + 1·[0,1] + 2·[0,0]) / 4 = [0.25, 0.25]: equal logits
    full = loss(0.25, 0.25, LABELS)
    assert full == pytest.approx(0.693147, abs=1e-6)
    assert evaluate(Bias2, {"b": W1["b"] * 0 + 0.25}, VALIDATION).loss == pytest.approx(full, abs=1e-7)
    # re-normalised leave-one-out models: w^-1 = [0, 1/3], w^-2 = [1/3, 0], w^-3 = [0.5, 0.5]
    loo = leave_one_out_states([W1, W2, W3], N)
    assert [x for s in loo for x in s["b"].tolist()] == pytest.approx([0, 1 / 3, 1 / 3, 0, 0.5, 0.5])
    expected = [
        loss(0, 1 / 3, LABELS) - full,  # +0.097158: without w1 the model is worse -> w1 helped
        loss(1 / 3, 0, LABELS) - full,  # -0.069508: without w2 the model is better -> w2 hurt
        loss(0.5, 0.5, LABELS) - full,  # 0: w3 does not move the logit gap
    ]
    got = LeaveOneOut().contributions(Bias2, [W1, W2, W3], N, VALIDATION, full, global_state=state(0, 0))
    assert got == pytest.approx(expected, abs=1e-6)
    assert got[0] == pytest.approx(0.097158, abs=1e-6) and got[1] == pytest.approx(-0.069508, abs=1e-6)
    assert abs(got[2]) < 1e-6


def test_single_worker_contribution_is_its_gain_over_the_global_model() -> None:
    g = state(0.0, 0.0)
    full = loss(1.0, 0.0, LABELS)
    got = LeaveOneOut().contributions(Bias2, [W1], [5], VALIDATION, full, global_state=g)
    assert got == pytest.approx([loss(0, 0, LABELS) - full], abs=1e-6)  # ln2 − 0.563262 = 0.129885


def test_no_worker_no_contribution() -> None:
    assert LeaveOneOut().contributions(Bias2, [], [], VALIDATION, 0.7, global_state=W1) == []
    with pytest.raises(ValueError):
        LeaveOneOut().contributions(Bias2, [W1], [1, 2], VALIDATION, 0.7, global_state=W1)


def test_leave_one_out_states_equal_the_fedavg_of_the_others() -> None:
    """The O(N) subtraction form agrees with re-averaging the others to float32's last bit at most."""
    import torch

    from refiner.fl.aggregation import fedavg

    gen = torch.Generator().manual_seed(7)
    states = [
        {"w": torch.randn(64, 33, generator=gen), "b": torch.randn(10, generator=gen) * 1e-3}
        for _ in range(9)
    ]
    samples = [int(n) for n in torch.randint(1, 5000, (9,), generator=gen)]
    samples[3] = 2**40  # one worker dominates: the subtraction must not lose float32 precision
    loo = leave_one_out_states(states, samples)
    for j, got in enumerate(loo):
        others = [s for i, s in enumerate(states) if i != j]
        want = fedavg(others, [n for i, n in enumerate(samples) if i != j])
        for name in ("w", "b"):
            ulp = torch.finfo(torch.float32).eps * want[name].abs().clamp_min(1e-30)
            assert torch.all((got[name] - want[name]).abs() <= ulp), (j, name)
            assert got[name].dtype == torch.float32
    with pytest.raises(ValueError):
        leave_one_out_states(states[:1], samples[:1])
