"""A task whose model is the participants' own (registered locally by name, never named as code by the
task) runs a round end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from torch import nn

from refiner.chain import Chain, Durations, TaskConfig
from refiner.fl.data import synthetic_dataset
from refiner.fl.models import Logistic
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore
from refiner.units import ETH


class Tiny(Logistic):
    """A custom model only the participants' own configuration knows."""


def tiny() -> nn.Module:
    return Tiny()


def test_a_local_model_runs_a_round(tmp_path: Path) -> None:
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=ETH // 10,
        target_accuracy=1.0,
        max_rounds=1,
        max_workers=2,
        committee_size=3,
        durations=Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=600, claim=600),
    )
    shards = [synthetic_dataset(60, seed) for seed in (1, 2)]

    def deploy(label: str, models: dict[str, Callable[[], nn.Module]] | None = None) -> Simulation:
        return Simulation.deploy(
            Chain.connect(),
            DirectoryStore(tmp_path / label),
            shards,
            [WorkerBehaviour.HONEST] * 2,
            [ValidatorBehaviour.HONEST] * 3,
            config=config,
            model="tiny",
            models=models,
            stake_unit=ETH,
            label=label,
        )

    with pytest.raises(ValueError, match="unknown model 'tiny'"):
        deploy("nobody-has-it")
    sim = deploy("local", {"tiny": tiny})
    assert isinstance(sim.model_fn(), Tiny) and '"model":"tiny"' in sim.task.config().description
    report = sim.run_round(synthetic_dataset(60, 3), synthetic_dataset(60, 4))
    assert report.consensus and len(report.accepted) + len(report.rejected) == 2
    assert set(report.reasons) == set(report.accepted) | set(report.rejected)
