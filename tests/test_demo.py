"""`refiner demo` end to end with a small model: the JSON summary has what the issue asks for and the
numbers in it are consistent (shuffled-label worker rejected and unpaid, Ether conserved)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refiner.cli import app
from refiner.demo import demo_model


def test_demo_cli_writes_a_consistent_summary(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--rounds",
            "2",
            "--workers",
            "3",
            "--validators",
            "4",
            "--committee",
            "64",  # the largest τ, ≥ total stake units: every validator wins all its units
            "--model",
            "logistic",
            "--out",
            str(tmp_path / "out"),
            "--json",
            str(summary_path),
            "--parallel",
            "2",  # training and evaluations on two worker processes (tests/test_parallel.py: same results)
        ],
    )
    assert result.exit_code == 0, result.output
    assert "training and evaluations run on 2 processes on this machine" in result.output
    s = json.loads(summary_path.read_text())
    assert set(s) >= {
        "final_accuracy",
        "rounds",
        "workers",
        "validators",
        "requester_spent_wei",
        "contract_balance_wei",
    }
    assert s["final_accuracy"] > 0.85 and s["initial_accuracy"] < 0.5  # round 0 is the initial model
    paid_lines = [line for line in result.output.splitlines() if "validators paid (ETH):" in line]
    assert len(paid_lines) == 2  # every validator's pay, one by one (not only the distinct amounts)
    for v in s["validators"]:
        if v["weight"]:
            assert all(v["address"][:8] in line for line in paid_lines), paid_lines
    bad = [w for w in s["workers"] if w["behaviour"] == "shuffled-labels"]
    assert len(bad) == 1 and bad[0]["earned_wei"] == 0
    for r in s["rounds"]:
        assert set(r) >= {
            "round",
            "accuracy",
            "accepted",
            "rejected",
            "contributions",
            "worker_rewards_wei",
            "validator_rewards_wei",
            "gas_used",
            "seconds",
        }
        assert r["rejected"] == [bad[0]["address"]]
        # agreeing validators earn the same per seat (vote weight won by sortition)
        weight = {v["address"]: v["weight"] for v in s["validators"]}
        assert len({wei // weight[a] for a, wei in r["validator_rewards_wei"].items()}) == 1
    paid = sum(w["earned_wei"] for w in s["workers"]) + sum(v["earned_wei"] for v in s["validators"])
    assert s["requester_spent_wei"] == paid + s["contract_balance_wei"]
    assert (tmp_path / "out" / "learning_curve.png").stat().st_size > 0
    assert (tmp_path / "out" / "final_model.safetensors").stat().st_size > 0
    # the embedded chain ended with the run: its own store went with it
    assert not list((tmp_path / "out").glob("store-*"))


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--chain", "http://127.0.0.1:1"], "no Ethereum JSON-RPC node answers at http://127.0.0.1:1"),
        (["--chain", "localhost:8545"], "did you mean http://localhost:8545?"),
        (["--storage", "/etc/passwd/store"], "cannot create store directory /etc/passwd/store"),
        (["--storage", "ipfs:///etc/passwd/repo"], "cannot create IPFS repo directory /etc/passwd/repo"),
    ],
)
def test_a_bad_chain_or_store_is_one_error_line_and_leaves_nothing_behind(
    tmp_path: Path, option: list[str], says: str
) -> None:
    out = tmp_path / "new" / "demo-output"
    result = CliRunner().invoke(app, ["demo", "--rounds", "1", *option, "--out", str(out)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.output
    assert list(tmp_path.iterdir()) == []  # neither the output folder nor a store was left


def test_a_failed_run_removes_its_own_store_and_only_what_it_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "broken_model.py").write_text("def net():\n    raise OSError('this model cannot be built')\n")
    monkeypatch.syspath_prepend(str(code))
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    result = CliRunner().invoke(
        app, ["demo", "--model", "broken_model:net", "--rounds", "1", "--out", str(out)]
    )
    assert result.exit_code == 1 and "error: this model cannot be built" in result.output, result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]  # its store went, the folder it found stayed


def test_demo_cli_refuses_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--malicious", "9", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "--malicious must be between 0 and --workers" in result.output
    result = CliRunner().invoke(app, ["demo", "--parallel", "lots", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--parallel takes a number of cores or a Ray address" in result.output


def test_demo_model_is_a_name_and_the_operator_s_own_code_a_local_model(tmp_path: Path) -> None:
    assert demo_model("small_cnn") == ("small_cnn", {})
    name, models = demo_model("refiner.fl.models:logistic")
    assert name == "custom"  # 'logistic' is a built-in name: the local one may not hide it
    assert list(models) == ["custom"] and sum(p.numel() for p in models["custom"]().parameters()) == 7_850
    assert demo_model("refiner.fl.models:Logistic")[0] == "Logistic"
    result = CliRunner().invoke(app, ["demo", "--model", "resnet", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--model 'resnet'" in result.output
