"""A simulation whose training and evaluations run in parallel (`refiner.parallel`) plays the same rounds
as the sequential one, bit for bit: on worker processes of this machine, and across a two-node Ray cluster
on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from refiner.chain import Chain, Durations, TaskConfig
from refiner.fl.data import synthetic_dataset
from refiner.fl.models import model_digest
from refiner.parallel import Executor, ProcessExecutor, RayExecutor, Sequential, executor_for
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore
from refiner.units import ETH

RAY = Path(sys.executable).parent / "ray"

WORKERS = [
    WorkerBehaviour.HONEST,
    WorkerBehaviour.HONEST,
    WorkerBehaviour.SIGN_FLIP,
    WorkerBehaviour.TARGETED_LABEL_FLIP,
    WorkerBehaviour.REPLAY_OWN_UPDATE,
    WorkerBehaviour.FREE_RIDER,
]
VALIDATORS = [
    ValidatorBehaviour.HONEST,
    ValidatorBehaviour.HONEST,
    ValidatorBehaviour.HONEST,
    ValidatorBehaviour.COLLUDER,
    ValidatorBehaviour.RANDOM,
]


def play(
    store: Path,
    executor: Executor,
    rounds: int,
    workers: Sequence[WorkerBehaviour] = WORKERS,
    validators: Sequence[ValidatorBehaviour] = VALIDATORS,
) -> list[Any]:
    """Deploy a task (every validator seated, so that two deployments seat the same committee) and play
    `rounds` rounds on `executor`: what each round decided, its consensus vote key and the model."""
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=ETH // 10,
        target_accuracy=1.0,
        max_rounds=rounds,
        max_workers=len(workers),
        committee_size=len(validators),  # τ = every validator's one stake unit: all win a seat
        durations=Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=600, claim=600),
    )
    shards = [synthetic_dataset(120 + 40 * i, i, noise=3.0) for i in range(len(workers))]
    sim = Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        shards,
        list(workers),
        list(validators),
        config=config,
        model="logistic",
        stake_unit=ETH,
        label="parallel",
    )
    assert len(sim.committee) == len(validators)
    sim.executor = executor
    played = []
    for _ in range(rounds):
        r = sim.run_round(synthetic_dataset(200, 99, noise=3.0), synthetic_dataset(200, 98, noise=3.0))
        played.append(
            (
                r.consensus,
                r.accepted,
                r.rejected,
                r.contributions,
                r.worker_rewards_wei,
                r.validator_rewards_wei,
                sim.task.round_info(r.round).consensus_key,
                model_digest(sim.global_state),
            )
        )
    return played


def test_rounds_on_worker_processes_match_the_sequential_rounds_bit_for_bit(tmp_path: Path) -> None:
    sequential = play(tmp_path / "sequential", Sequential(), rounds=2)
    executor = executor_for(2)
    try:
        assert isinstance(executor, ProcessExecutor) and executor.parallelism == 2
        parallel = play(tmp_path / "processes", executor, rounds=2)
    finally:
        executor.close()
    assert parallel == sequential
    # the rounds did something to compare: a consensus, honest workers paid, attackers rejected
    consensus, accepted, rejected, *_ = sequential[1]
    assert consensus and len(accepted) >= 2 and rejected


def test_parallel_names_cores_or_a_cluster_and_refuses_anything_else() -> None:
    assert isinstance(executor_for(None), Sequential) and isinstance(executor_for("1"), Sequential)
    with pytest.raises(ValueError, match="number of cores or a Ray address"):
        executor_for("many")


def test_a_task_runs_across_a_two_node_ray_cluster(tmp_path: Path) -> None:
    """Ray's gRPC servers listen on every interface whatever node address they are given (measured with
    Ray 2.60), so the cluster runs in a network namespace of its own, where the only interface is the
    loopback: nothing of it can be reached from outside."""
    script = f"ip link set lo up && exec {sys.executable} -m tests.test_parallel {tmp_path}"
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        # the cluster's members and its driver prove themselves with a token of the test's own
        env={
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "the round on two Ray nodes matched the sequential one"


def _node_of(seconds: float) -> str:
    import ray

    time.sleep(seconds)
    return str(ray.get_runtime_context().get_node_id())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def two_node_cluster() -> Iterator[str]:
    """A Ray head and one more node, one CPU each, on 127.0.0.1; stopped afterwards."""
    port = _free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    try:
        head = [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false", *common]
        subprocess.run(head, check=True, capture_output=True, timeout=120)
        more = [str(RAY), "start", f"--address=127.0.0.1:{port}", *common]
        subprocess.run(more, check=True, capture_output=True, timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120, check=False)


def round_on_a_cluster(tmp: Path) -> None:
    """Run in the test's network namespace: one round on a two-node cluster, then sequentially."""
    honest = [WorkerBehaviour.HONEST] * 3
    committee = [ValidatorBehaviour.HONEST] * 3
    with two_node_cluster() as address:
        executor = RayExecutor(address=address)
        try:
            deadline = time.monotonic() + 60
            while len(executor.nodes()) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(executor.nodes()) == 2 and executor.parallelism == 2
            # two jobs that overlap in time run one on each node
            assert len(set(executor.map(_node_of, [(1.0,), (1.0,)]))) == 2
            parallel = play(tmp / "cluster", executor, rounds=1, workers=honest, validators=committee)
        finally:
            executor.close()
    sequential = play(tmp / "sequential", Sequential(), rounds=1, workers=honest, validators=committee)
    assert parallel == sequential and parallel[0][0] and len(parallel[0][1]) == 3
    print("the round on two Ray nodes matched the sequential one")


if __name__ == "__main__":
    round_on_a_cluster(Path(sys.argv[1]))
