"""Requester attacks against a whole task: the real embedded EVM, a directory store and real encryption;
three honest workers (300 MNIST images each, logistic model), three or five honest validators (all
seated), ε = 1.0. Each test drives the round step by step so that the requester can misbehave between
steps, and checks that every honest participant is paid what the round owes it.

What the contract guarantees: a started round's rewards are escrowed and out of the requester's reach;
nobody can stop a round once it has started; the round completes and pays without the requester; an
abandoned task terminates and frees the validators' stakes. What it cannot guarantee is written as
`test_limit_*`: the requester controls the validation set, and a round that ends without a paid
worker returns the worker reward to the requester, who can read every submitted update.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from refiner.chain import (
    Chain,
    ContractRevert,
    Durations,
    Status,
    TaskConfig,
    TerminationReason,
    public_key_bytes,
)
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist, subset
from refiner.fl.models import serialize
from refiner.roles import Evaluated, ValidatorBehaviour, WorkerBehaviour
from refiner.sharing import Context, NotARecipient, retrieve, share
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore, Handle
from refiner.units import ETH
from refiner.wire.datasets import dataset_to_bytes
from refiner.wire.details import load_details

WORKER_REWARD = ETH
VALIDATOR_REWARD = 3 * ETH // 10
ESCROW = WORKER_REWARD + VALIDATOR_REWARD
DURATIONS = Durations(recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000)


@dataclass(frozen=True)
class Mnist:
    validation: Dataset
    shards: list[Dataset]
    test: Dataset


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    train, test = load_mnist()
    validation, shards = split_mnist(train, [300] * 3, validation_size=500, seed=1)
    return Mnist(validation, shards, subset(test, 1000))


def deploy(data: Mnist, store: Path, label: str, validators: int = 3) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=WORKER_REWARD,
        validator_reward=VALIDATOR_REWARD,
        target_accuracy=1.0,
        max_rounds=2,
        max_workers=3,
        committee_size=validators,
        epsilon=1.0,
        durations=DURATIONS,
    )
    return Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        data.shards,
        [WorkerBehaviour.HONEST] * 3,
        [ValidatorBehaviour.HONEST] * validators,
        config=config,
        model="logistic",
        lr=0.05,
        stake_unit=ETH,  # 1 unit each and τ = W: every validator is seated
        label=label,
    )


def refused(error: str, call: Callable[..., object], *args: object) -> None:
    with pytest.raises(ContractRevert) as exc:
        call(*args)
    assert exc.value.error == error, exc.value


def train_all(sim: Simulation) -> None:
    for w in sim.workers:
        w.submit_training_results(sim.task, w.train(sim.task))


def commit_and_reveal(sim: Simulation, works: list[Evaluated]) -> None:
    committee = {v.address: v for v in sim.committee}
    for work in works:
        committee[work.details.validator].commit_manifest(sim.task, work)
    if sim.task.status() is Status.EVALUATING:  # someone did not commit: wait out the deadline
        sim.chain.increase_time(DURATIONS.evaluation + 1)
        sim.task.advance(sim.workers[0].account)
    for work in works:
        committee[work.details.validator].reveal_manifest(sim.task, work)


def claims(sim: Simulation, round_: int) -> dict[str, int]:
    """What every worker and validator receives when it claims its reward for `round_`."""
    paid = {w.address: w.claim_reward(sim.task, round_) for w in sim.workers}
    return paid | {v.address: v.claim_reward(sim.task, round_) for v in sim.committee}


def assert_paid_as_owed(sim: Simulation, round_: int, paid: dict[str, int], agreeing: int) -> None:
    """Workers are paid `workerReward × c / Σc` of the consensus manifest, agreeing validators an equal
    share of the validator reward; only rounding dust is left for the requester."""
    manifest = sim.task.consensus_manifest(round_)
    assert manifest is not None
    (salt,) = {salt for m, salt in sim.task.reveals(round_).values() if m == manifest}
    details = load_details(sim.store, manifest, salt)
    positive = {
        r["worker"]: r["contribution"] for r in details.results if r["accepted"] and r["contribution"] > 0
    }
    total = sum(positive.values())
    for w in sim.workers:
        assert paid[w.address] == (
            WORKER_REWARD * positive[w.address] // total if w.address in positive else 0
        )
    if positive:
        assert sum(paid[w.address] for w in sim.workers) >= WORKER_REWARD - len(positive)
    revealed = sim.task.revealed_manifests(round_)
    for v in sim.committee:
        agrees = v.address in revealed and revealed[v.address].vote_key() == manifest.vote_key()
        assert paid[v.address] == (VALIDATOR_REWARD // agreeing if agrees else 0)


def test_the_requester_cannot_withdraw_a_started_rounds_escrow(mnist: Mnist, tmp_path: Path) -> None:
    """The requester funds 2 ETH and starts a round: 1.3 ETH moves into the round's escrow. Mid-round
    (training, then evaluation) it tries to withdraw the escrow, the whole balance, or a wei more than
    its budget: refused with `AmountExceedsBudget`. It can take back only the 0.7 ETH budget; the round
    completes and everybody is paid from the escrow."""
    sim = deploy(mnist, tmp_path / "store", "withdraw")
    task, requester = sim.task, sim.requester
    task.fund(requester.account, 2 * ETH)
    requester.start_round(task, sim.global_state, mnist.validation)
    assert task.budget() == 2 * ETH - ESCROW and task.balance() == task.owed() == 2 * ETH
    for amount in (task.budget() + 1, ESCROW, task.balance()):
        refused("AmountExceedsBudget", task.withdraw, requester.account, amount)
    withdrawn = requester.withdraw_budget(task)
    assert withdrawn is not None and withdrawn.event("Withdrawn")["amount"] == 2 * ETH - ESCROW
    assert task.budget() == 0 and task.balance() == task.owed() == ESCROW
    train_all(sim)
    assert task.status() is Status.EVALUATING
    refused("AmountExceedsBudget", task.withdraw, requester.account, 1)
    commit_and_reveal(sim, [v.evaluate(task) for v in sim.committee])
    assert "RoundFinalized" in requester.finalize_round(task).names()
    paid = claims(sim, 1)
    assert_paid_as_owed(sim, 1, paid, agreeing=3)
    # the validators' rounding dust returned to the budget, the workers' stays in their escrow
    assert sum(paid.values()) + task.budget() + task.worker_escrow() == ESCROW
    assert task.balance() == task.owed() == task.budget() + task.worker_escrow()


def test_the_requester_cannot_stop_training_mid_round(mnist: Mnist, tmp_path: Path) -> None:
    """`stopTraining` is refused in every phase of a started round (`WrongStatus`), so a requester
    cannot cancel a round whose updates it has seen. Between rounds it may stop: the task terminates,
    the validators' stakes unlock, and the finished round's rewards stay claimable."""
    sim = deploy(mnist, tmp_path / "store", "stop")
    task, requester = sim.task, sim.requester
    requester.start_round(task, sim.global_state, mnist.validation)
    refused("WrongStatus", requester.stop_training, task)
    train_all(sim)
    refused("WrongStatus", requester.stop_training, task)  # EVALUATING
    works = [v.evaluate(task) for v in sim.committee]
    for v, work in zip(sim.committee, works, strict=True):
        v.commit_manifest(task, work)
    assert task.status() is Status.REVEALING
    refused("WrongStatus", requester.stop_training, task)
    for v, work in zip(sim.committee, works, strict=True):
        v.reveal_manifest(task, work)
    assert task.status() is Status.REWARDING
    refused("WrongStatus", requester.stop_training, task)
    requester.finalize_round(task)
    stopped = requester.stop_training(task)  # PENDING: allowed
    assert stopped.event("TaskTerminated")["reason"] == TerminationReason.Stopped
    assert all(sim.registry.validator_info(v.address).active_seats == 0 for v in sim.committee)
    assert_paid_as_owed(sim, 1, claims(sim, 1), agreeing=3)  # claimed after termination


def test_a_requester_that_disappears_after_starting_a_round_cannot_stall_it(
    mnist: Mnist, tmp_path: Path
) -> None:
    """The requester starts round 1 (of 2) and is never heard of again. The round needs nothing more
    from it: workers train, validators evaluate, commit and reveal, a worker finalizes and everyone
    claims. The task then sits idle in PENDING; once the idle deadline has passed anybody `advance`s it
    to TERMINATED (reason Idle), which releases the validators' stakes: before, unbonding is refused
    (`SeatedOnActiveTask`); after, a validator unbonds and withdraws its whole stake."""
    sim = deploy(mnist, tmp_path / "store", "gone")
    task, chain = sim.task, sim.chain
    sim.requester.start_round(task, sim.global_state, mnist.validation)
    # --- the requester is gone
    train_all(sim)
    commit_and_reveal(sim, [v.evaluate(task) for v in sim.committee])
    assert "RoundFinalized" in task.finalize_round(sim.workers[0].account).names()
    assert_paid_as_owed(sim, 1, claims(sim, 1), agreeing=3)
    assert task.status() is Status.PENDING
    validator = sim.committee[0]
    stake = sim.registry.validator_info(validator.address).stake
    refused("SeatedOnActiveTask", sim.registry.request_unbond, validator.account, stake)
    refused("DeadlineNotReached", task.advance, validator.account)
    chain.increase_time(DURATIONS.idle + 1)
    ended = task.advance(validator.account)
    assert ended.event("TaskTerminated")["reason"] == TerminationReason.Idle
    assert not sim.registry.is_active_task(task.address)
    assert all(sim.registry.validator_info(v.address).active_seats == 0 for v in sim.committee)
    sim.registry.request_unbond(validator.account, stake)
    chain.increase_time(sim.registry.unbonding_delay() + 1)
    assert sim.registry.withdraw_stake(validator.account).event("StakeWithdrawn")["amount"] == stake
    # only the rounding dust is left: the validators' in the budget, the workers' in their escrow
    assert task.balance() == task.owed() == task.budget() + task.worker_escrow()


# ---------------------------------------------------------------- the validation set


def start_round_sharing_validation_with(sim: Simulation, validation: Dataset, readers: list[str]) -> None:
    """Requester.start_round, except that the validation set's key is wrapped for `readers` only (one
    RoundStarted event carries one validation handle, so this is the only inconsistency possible)."""
    task, requester = sim.task, sim.requester
    me = {requester.address: public_key_bytes(requester.account)}
    everyone = {w: sim.registry.worker_key(w) for w in task.workers()}
    everyone |= {v: sim.registry.validator_key(v) for v in task.committee()} | me
    model_h, model_k = share(
        sim.store, serialize(sim.global_state), Context(task.address, 1, requester.address, "model"), everyone
    )
    val_h, val_k = share(
        sim.store,
        dataset_to_bytes(validation),
        Context(task.address, 1, requester.address, "validation"),
        {v: sim.registry.validator_key(v) for v in readers} | me,
    )
    task.start_round(
        requester.account, bytes(model_h), bytes(model_k), bytes(val_h), bytes(val_k), value=ESCROW
    )


def evaluate_those_who_can(sim: Simulation, readers: list[str]) -> list[Evaluated]:
    works = []
    for v in sim.committee:
        if v.address in readers:
            works.append(v.evaluate(sim.task))
        else:
            with pytest.raises(NotARecipient):
                v.evaluate(sim.task)
    return works


def assert_the_requester_cannot_read_the_updates(sim: Simulation, round_: int) -> None:
    """Updates are encrypted to the committee only: a requester that sabotages a round gets its escrow
    back but none of the work."""
    task = sim.task
    events = task.round_events("TrainingResultsSubmitted", round_)
    assert events
    for e in events:
        with pytest.raises(NotARecipient):
            retrieve(
                sim.store,
                Handle.from_bytes(e["modelHandle"]),
                Handle.from_bytes(e["keysHandle"]),
                Context(task.address, round_, e["worker"], "update"),
                sim.requester.account,
                max_bytes=64 << 20,
            )


def test_a_validation_set_only_a_majority_of_the_committee_can_open(mnist: Mnist, tmp_path: Path) -> None:
    """The requester wraps the validation set's key for three of its five validators. The other two
    cannot open it, cannot evaluate and do not commit; after the evaluation deadline anybody advances
    the round, the three reveal the same manifest, which holds 3 of 5 votes: consensus. Workers are
    paid as usual; the validator reward goes whole to the three (0.1 ETH each): the requester gets
    none of it back, and the two starved validators lose nothing they had a claim to (they did no
    work)."""
    sim = deploy(mnist, tmp_path / "store", "majority", validators=5)
    readers = [v.address for v in sim.committee[:3]]
    start_round_sharing_validation_with(sim, mnist.validation, readers)
    train_all(sim)
    commit_and_reveal(sim, evaluate_those_who_can(sim, readers))
    assert len(sim.task.revealed_manifests(1)) == 3
    assert "RoundFinalized" in sim.task.finalize_round(sim.workers[0].account).names()
    paid = claims(sim, 1)
    assert_paid_as_owed(sim, 1, paid, agreeing=3)
    assert {paid[v] for v in readers} == {VALIDATOR_REWARD // 3}
    assert sum(paid.values()) + sim.task.budget() + sim.task.worker_escrow() == ESCROW  # dust stays there


def test_limit_a_validation_set_only_a_minority_of_the_committee_can_open(
    mnist: Mnist, tmp_path: Path
) -> None:
    """Shared with two of five validators, the validation set yields two reveals: 2 of 5 votes is no
    consensus. The round ends with `NoConsensus`: nobody is paid, the 1.3 ETH escrow returns to the
    requester's budget and it withdraws it; the global model on chain stays as it was. The limit: the
    three workers did their work, were owed 1 ETH by an honest round and get nothing, while the
    requester cannot open a single update, so it gains nothing but a wasted round. (When updates were
    also encrypted to the requester, for audits, it could average them itself: measured test accuracy
    0.78 from 0.06 — the reason updates now go to the committee only.)"""
    sim = deploy(mnist, tmp_path / "store", "minority", validators=5)
    task, requester = sim.task, sim.requester
    readers = [v.address for v in sim.committee[:2]]
    start_round_sharing_validation_with(sim, mnist.validation, readers)
    train_all(sim)
    commit_and_reveal(sim, evaluate_those_who_can(sim, readers))
    finalized = task.finalize_round(sim.workers[0].account)
    assert finalized.event("NoConsensus")["refunded"] == ESCROW
    assert task.last_consensus_round() == 0
    for v in sim.committee:
        refused("NoReward", task.claim_validator_reward, v.account)
    # a worker's leaf from a revealed (non-consensus) manifest is worth nothing either
    details = load_details(sim.store, *next(iter(task.reveals(1).values())))
    tree, worker = details.tree(), sim.workers[0]
    refused(
        "NoReward",
        task.claim_reward,
        worker.account,
        1,
        tree.result_of(worker.address),
        tree.proof(worker.address),
    )
    withdrawn = requester.withdraw_budget(task)
    assert withdrawn is not None and withdrawn.event("Withdrawn")["amount"] == ESCROW
    assert task.balance() == 0
    assert_the_requester_cannot_read_the_updates(sim, 1)


def test_limit_a_mislabelled_validation_set_rejects_every_worker_and_refunds_their_reward(
    mnist: Mnist, tmp_path: Path
) -> None:
    """The same validation set for every validator, but with its labels shuffled: every honest update
    has a validation loss above ε (measured 3.56-3.65 against 1.0) and is rejected. The committee agrees
    (consensus, validators paid 0.1 ETH each) on a manifest with no payee, so the contract returns the
    whole 1 ETH worker reward to the requester's budget. The limit: the committee can only judge
    updates against the requester's validation set; a requester that poisons it pays the validators
    (0.3 ETH) and no worker; it cannot open the updates it refused to pay for."""
    sim = deploy(mnist, tmp_path / "store", "mislabelled")
    task, requester = sim.task, sim.requester
    requester.start_round(task, sim.global_state, shuffle_labels(mnist.validation, seed=7))
    train_all(sim)
    works = [v.evaluate(task) for v in sim.committee]
    commit_and_reveal(sim, works)
    fin = requester.finalize_round(task)
    assert "RoundFinalized" in fin.names() and fin.event("EscrowReleased")["amount"] == WORKER_REWARD
    for r in works[0].details.results:
        assert not r["accepted"] and r["loss"] > 1_000_000, r
    paid = claims(sim, 1)
    assert all(paid[w.address] == 0 for w in sim.workers)
    assert_paid_as_owed(sim, 1, paid, agreeing=3)
    assert task.budget() == ESCROW - 3 * (VALIDATOR_REWARD // 3)
    assert_the_requester_cannot_read_the_updates(sim, 1)
