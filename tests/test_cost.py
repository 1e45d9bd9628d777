"""`refiner cost`: the estimate from a few measured calls agrees with bench/gas.py's measurement of whole
rounds at other sizes within 5 %, and the command prints one table (or one error line)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from refiner.cli import app
from refiner.cost import Measured, claims_gas, depth, estimate, measure
from tests.helpers import config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "task.toml"


def _bench_gas() -> ModuleType:
    if "bench_gas" in sys.modules:
        return sys.modules["bench_gas"]
    spec = importlib.util.spec_from_file_location("bench_gas", ROOT / "bench" / "gas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gas"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured() -> Measured:
    return measure(config(sign_up_deposit=10**16))


CELLS = [(3, 2), (16, 3), (16, 8)]  # (workers, committee): the measured round had 4 and 5


def test_the_estimate_matches_whole_rounds_measured_at_other_sizes(measured: Measured) -> None:
    """bench/gas.py plays one round per cell (other accounts, another registry): its per-round gas and
    its mean gas per worker and per validator are the estimate's within 5 %."""
    bench = _bench_gas()
    world, accounts = bench.bench_world(
        max(n for n, _ in CELLS), max(c for _, c in CELLS), "cost-test-worker"
    )
    for n, c in CELLS:
        gas = bench.measure(world, accounts[:n], world.validators[:c], n)
        row = bench.summarise(n, c, gas, 20)
        e = estimate(measured, config(sign_up_deposit=10**16, max_workers=n, committee_size=c), n, 1)
        mean = {call: sum(v) / len(v) for call, v in gas.items()}
        predicted = {
            "per round": e.round_gas,
            "per worker": (e.phase_gas["submitTrainingResults"] + e.phase_gas["claimReward"]) / n,
            "per validator": (e.validator_gas * c - e.phase_gas["claimSeat"]) / c,
        }
        actual = {
            "per round": row["per_round"],
            "per worker": mean["submitTrainingResults"] + mean["claimReward"],
            "per validator": mean["commitManifest"] + mean["revealManifest"] + mean["claimValidatorReward"],
        }
        for what, value in predicted.items():
            assert abs(value - actual[what]) <= 0.05 * actual[what], (n, c, what, value, actual[what])


def test_the_estimate_of_a_task_claimed_once_matches_a_whole_task_measured(measured: Measured) -> None:
    """bench/gas.py's whole task (4 rounds, every worker and member claiming once at the end): its gas
    per worker and round and per validator and round are the estimate's within 5 %."""
    bench = _bench_gas()
    n, c, rounds = 8, 3, 4
    world, accounts = bench.bench_world(n, c, "cost-task-worker")
    row = bench.summarise_task(n, c, rounds, bench.measure_task(world, accounts, world.validators, rounds))
    cfg = config(sign_up_deposit=10**16, max_workers=n, committee_size=c, max_rounds=rounds)
    e = estimate(measured, cfg, n, rounds)
    p = e.phase_gas
    predicted = {
        "worker": (rounds * p["submitTrainingResults"] + p["claimReward"]) / (n * rounds),
        "validator": (rounds * (p["commitManifest"] + p["revealManifest"]) + p["claimValidatorReward"])
        / (c * rounds),
    }
    actual = {"worker": row["worker_per_round"], "validator": row["validator_per_round"]}
    for what, value in predicted.items():
        assert abs(value - actual[what]) <= 0.05 * actual[what], (what, value, actual[what])
    # claimed once: a 4-round task costs a worker less per round than a 1-round one
    assert e.worker_gas < estimate(measured, cfg, n, 1).worker_gas * 4


def test_only_the_worker_claims_grow_with_the_workers(measured: Measured) -> None:
    assert 300 < measured.per_sibling < 2_000  # a 32-byte sibling in calldata and one keccak
    cfg = config(max_workers=1000)
    small, large = estimate(measured, cfg, 5, 3), estimate(measured, cfg, 1000, 3)
    # one proof level more (512 -> 1024 results) costs each claim one sibling (the one-off costs, such as
    # the last payee's dust, spread over hundreds of claims)
    extra = claims_gas(measured, 1024) / 1024 - claims_gas(measured, 512) / 512
    assert abs(extra - measured.per_sibling) < 100, (extra, measured.per_sibling)
    assert depth(1024) == depth(1000) == 10 and depth(5) == 3 and depth(1) == 0
    assert large.validator_gas == small.validator_gas and large.requester_gas == small.requester_gas
    assert large.round_gas - small.round_gas > 995 * small.phase_gas["submitTrainingResults"] / 5
    assert small.escrow_wei == 3 * (cfg.worker_reward + cfg.validator_reward)
    assert small.task_gas == small.requester_gas + 5 * small.worker_gas + 64 * small.validator_gas
    with pytest.raises(ValueError, match="at least one worker"):
        estimate(measured, cfg, 0, 1)


def test_the_command_prints_each_participant_s_cost_at_two_gas_prices() -> None:
    result = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--workers", "3", "--rounds", "1"])
    assert result.exit_code == 0, result.output
    for words in (
        "3 workers, 1 rounds",
        "at 20 gwei",
        "at 0.01 gwei",
        "a worker",
        "a validator",
        "escrows 1.3 ETH",
    ):
        assert words in result.output, result.output
    task_gas = int(
        next(line for line in result.output.splitlines() if "the whole task" in line)
        .split("│")[2]
        .strip()
        .replace(",", "")
    )
    assert 4_000_000 < task_gas < 12_000_000  # the deployment is most of it


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--workers", "0"], "--workers must be 1 to the task's max_workers (5), not 0"),
        (["--rounds", "9"], "--rounds must be 1 to the task's max_rounds (2), not 9"),
        (["--gas-price", "cheap"], "--gas-price 'cheap': write a number of gwei, e.g. 20 or 0.01"),
    ],
)
def test_bad_options_get_one_error_line(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["cost", str(EXAMPLE), *args])
    assert result.exit_code == 1 and result.output.strip() == f"error: {says}", result.output
