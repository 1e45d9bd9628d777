"""`refiner worker run` / `validator run` options: the operator's own models and terms, merged over
refiner.toml's [models] and [agent]; a bad one is one line before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from refiner.agents import Terms
from refiner.cli import app
from refiner.cli.agent_cmds import _own_settings
from refiner.cli.context import Ctx
from refiner.config import ClientSettings, load_settings


def test_options_merge_over_refiner_toml(tmp_path: Path) -> None:
    path = tmp_path / "refiner.toml"
    path.write_text(
        "[models]\nmine = 'refiner.fl.models:logistic'\n[agent]\nmin_reward = 5\nmax_epochs = 3\n"
        "[agent.max_durations]\ntraining = '1h'\n"
    )
    ctx = Ctx(load_settings(path))
    assert _own_settings(ctx, None, None, None, None) == Terms(5, {"training": 3600}, 3, 30 * 86400)
    terms = _own_settings(ctx, ["other=refiner.fl.models:small_cnn"], "1 gwei", ["2h", "idle=1d"], 4, "7d")
    every = dict.fromkeys(["recruitment", "training", "evaluation", "reveal", "claim"], 7200)
    assert terms == Terms(10**9, {**every, "idle": 86400}, 4, 7 * 86400)
    assert ctx.settings.models == {
        "mine": "refiner.fl.models:logistic",
        "other": "refiner.fl.models:small_cnn",
    }
    assert sorted(ctx.models) == ["mine", "other"]
    assert sum(p.numel() for p in ctx.models["mine"]().parameters()) == 7_850
    assert _own_settings(Ctx(ClientSettings()), None, None, None, None) == Terms()


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (["worker", "run", "--model", "nocolon"], "--model 'nocolon': write NAME=package.module:function"),
        (["worker", "run", "--model", "a:b=os:abort"], "model 'a:b' names code to import"),
        (["worker", "run", "--model", "small_cnn=refiner.fl.models:logistic"], "are built-in model names"),
        (["worker", "run", "--max-duration", "train=1h"], "agent.max_durations.train.[key]"),
        (["worker", "run", "--min-reward", "lots"], "agent.min_reward: cannot read 'lots'"),
        (["validator", "run", "--max-lock", "forever"], "agent.max_lock: cannot read duration 'forever'"),
        (["validator", "run", "--max-epochs", "0"], "agent.max_epochs: input should be greater than"),
    ],
)
def test_bad_options_are_one_line(command: list[str], words: str, tmp_path: Path) -> None:
    data = ["--data", str(tmp_path / "none.safetensors")] if command[0] == "worker" else []
    (tmp_path / "refiner.toml").write_text("")
    result = CliRunner().invoke(app, [*command, *data, "--config", str(tmp_path / "refiner.toml")])
    assert result.exit_code != 0
    assert words in result.output or words in str(result.exception), result.output
