"""A whole Refiner task on the embedded chain with a real store and real encryption: every participant is a
role object with its own key. Small model and data so that it runs in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from refiner.chain import Chain, Durations, Status, TaskConfig
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.roles import ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore
from refiner.units import ETH

H, S, F = WorkerBehaviour.HONEST, WorkerBehaviour.SHUFFLED_LABELS, WorkerBehaviour.FREE_RIDER
VH, VC, VN = ValidatorBehaviour.HONEST, ValidatorBehaviour.COPYCAT, ValidatorBehaviour.NON_REVEALER


@pytest.fixture(scope="module")
def mnist() -> tuple[Dataset, list[Dataset], Dataset]:
    train, test = load_mnist()
    validation, shards = split_mnist(train, [600, 900, 1200, 900, 600], validation_size=500, seed=1)
    shards[3] = shuffle_labels(shards[3], seed=3)
    return validation, shards, test


def config(rounds: int) -> TaskConfig:
    return TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=rounds,
        max_workers=5,
        committee_size=5,
        epsilon=1.0,
        durations=Durations(
            recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000
        ),
    )


def test_a_task_with_malicious_participants_pays_only_the_honest(
    mnist: tuple[Dataset, list[Dataset], Dataset], tmp_path: Path
) -> None:
    validation, shards, test = mnist
    chain = Chain.connect()
    sim = Simulation.deploy(
        chain,
        DirectoryStore(tmp_path / "store"),
        shards,
        [H, H, H, S, F],
        [VH, VH, VH, VC, VN],
        config=config(rounds=2),
        model="logistic",
        lr=0.05,
        stake_unit=ETH,  # 1 unit each and τ = 5 ≥ W: all five validators win one seat
        label="e2e",
    )
    honest_workers = sim.workers[:3]
    shuffled, free_rider = sim.workers[3], sim.workers[4]
    honest_validators, copycat, silent = sim.validators[:3], sim.validators[3], sim.validators[4]
    reports = [sim.run_round(validation, test) for _ in range(2)]

    # round 1: the free-rider's untrained model has loss ≈ ln 10 > ε and is rejected; later its copy of
    # the global model qualifies, but leave-one-out gives it no positive contribution
    assert free_rider.address in reports[0].rejected
    assert reports[1].contributions[free_rider.address] <= 0
    for r in reports:
        assert r.consensus
        assert shuffled.address in r.rejected
        assert {w.address for w in honest_workers} <= set(r.accepted)
        assert r.worker_rewards_wei[shuffled.address] == r.worker_rewards_wei[free_rider.address] == 0
        # honest workers are paid in proportion to their (positive) contributions
        positive = {w: c for w, c in r.contributions.items() if c > 0 and w in r.accepted}
        total = sum(positive.values())
        for w in honest_workers:
            expected = ETH * positive[w.address] // total if w.address in positive else 0
            assert r.worker_rewards_wei[w.address] == expected
        paid = {r.validator_rewards_wei[v.address] for v in honest_validators}
        assert paid == {3 * ETH // 10 // 3}
        assert r.validator_rewards_wei[copycat.address] == r.validator_rewards_wei[silent.address] == 0
    assert reports[-1].accuracy > 0.8
    assert sim.task.status() == Status.TERMINATED

    # Ether is conserved exactly: what the requester deposited was paid out or is still refundable
    deposited = sum(int(e["amount"]) for e in sim.task.get_events("Funded"))
    assert deposited <= 2 * (ETH + 3 * ETH // 10)  # round 2 reuses round 1's rounding dust
    assert deposited == sum(sim.earned.values()) + sim.task.owed()
    # the workers' rounding dust stays in their escrow until the claim window after the task closes
    assert sim.task.validator_escrow() == 0 and sim.task.worker_escrow() <= 2 * len(sim.workers)
    assert sim.task.balance() == sim.task.owed() == sim.task.budget() + sim.task.worker_escrow()


def test_the_requester_retrieves_the_consensus_model(
    mnist: tuple[Dataset, list[Dataset], Dataset], tmp_path: Path
) -> None:
    from refiner.fl.models import model_digest

    validation, shards, test = mnist
    sim = Simulation.deploy(
        Chain.connect(),
        DirectoryStore(tmp_path / "store"),
        shards[:2],
        [H, H],
        [VH, VH, VH],
        config=config(rounds=1),
        model="logistic",
        stake_unit=ETH,
        label="retrieve",
    )
    sim.run_round(validation, test)
    manifest = sim.task.consensus_manifest(1)
    assert manifest is not None
    assert model_digest(sim.requester.retrieve_model(sim.task, 1)) == manifest.model_digest


def test_a_restarted_validator_rebuilds_its_commitment_from_the_chain_and_the_store(
    mnist: tuple[Dataset, list[Dataset], Dataset], tmp_path: Path
) -> None:
    """A validator that crashed after committing keeps no local state, yet reveals: its commitment's memo
    holds its details handle encrypted to itself; nobody else can read it."""
    from refiner.roles import Validator

    validation, shards, _ = mnist
    sim = Simulation.deploy(
        Chain.connect(),
        DirectoryStore(tmp_path / "store"),
        shards[:2],
        [H, H],
        [VH, VH, VH],
        config=config(rounds=1),
        model="logistic",
        stake_unit=ETH,
        label="recover",
    )
    task = sim.task
    sim.requester.start_round(task, sim.global_state, validation)
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    first, *others = sim.committee
    assert first.recover(task, 1) is None  # nothing committed yet
    work = first.evaluate(task)
    first.commit_manifest(task, work)
    restarted = Validator(first.account, sim.chain, sim.store, sim.registry)
    recovered = restarted.recover(task, 1)
    assert recovered is not None and recovered.manifest == work.manifest
    # another validator reading the same memo finds nothing it can use
    memo = task.round_events("ManifestCommitted", 1)[0]["memo"]
    assert bytes(memo) != bytes(work.manifest.details_handle)[2:]
    assert others[0].recover(task, 1) is None
    for v in others:
        v.commit_manifest(task, v.evaluate(task))
    restarted.reveal_manifest(task, recovered)
    assert first.address in task.revealed_manifests(1)
