"""`refiner committee` reads a committee from a real node."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from refiner.chain import Chain
from refiner.chain.anvil import find_anvil, start_anvil
from refiner.cli import app
from tests.helpers import build_world, new_task, recruit


@pytest.mark.anvil
def test_committee_command_lists_members_and_weights() -> None:
    if find_anvil() is None:
        pytest.skip("anvil is not installed (npm @foundry-rs/anvil); run `make setup`")
    with start_anvil() as node:
        world = build_world(Chain.connect(node.url), n_workers=2, n_validators=3, n_fresh=0)
        task = new_task(world)
        _, validators = recruit(world, task, n_workers=1, n_validators=3)
        result = CliRunner().invoke(app, ["committee", task.address, "--chain", node.url])
    assert result.exit_code == 0, result.output
    assert "3 seats" in result.output
    for v in validators:
        assert v.address in result.output


def test_committee_command_explains_an_unreachable_node() -> None:
    result = CliRunner().invoke(app, ["committee", "0x" + "11" * 20, "--chain", "http://127.0.0.1:9"])
    assert result.exit_code != 0
    assert "no Ethereum JSON-RPC node answers" in result.output


def test_committee_takes_its_chain_from_refiner_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "refiner.toml").write_text('chain = "http://127.0.0.1:9"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REFINER_CONFIG", raising=False)
    result = CliRunner().invoke(app, ["committee", "0x" + "11" * 20])
    assert result.exit_code == 1
    assert result.output.strip() == "error: no Ethereum JSON-RPC node answers at http://127.0.0.1:9"
