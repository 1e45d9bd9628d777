"""`refiner scripted-round`: one round with synthetic manifests pays two workers and the agreeing
validators, refuses the cheating calls and prints gas per call."""

from __future__ import annotations

import pytest

from refiner import scripted_round


def test_demo_runs_a_paying_round(capsys: pytest.CaptureFixture[str]) -> None:
    assert scripted_round.main() == 0
    out = capsys.readouterr().out
    assert "worker 0    │ accepted, contribution 1200  │ 0.250000 ETH" in out
    assert "worker 1    │ accepted, contribution 3600  │ 0.750000 ETH" in out
    assert "worker 2    │ rejected (loss > ε)          │ 0.000000 ETH" in out
    assert out.count("│ agreed ") == 3
    for refusal in (
        "AlreadyRegistered",
        "AmountExceedsBudget",
        "CommitmentMismatch",
        "NoReward",
        "AlreadyClaimed",
    ):
        assert refusal in out
    assert "Gas per call" in out and "revealManifest" in out
