"""Every deadline path: a phase ends when everyone acted or, after its deadline, when anybody advances it.
An absent requester, silent workers or validators cannot stall a task or keep anyone from being paid."""

from __future__ import annotations

from dataclasses import replace

from refiner.chain import Status, TerminationReason
from tests.helpers import (
    VALIDATOR_REWARD,
    WORKER_REWARD,
    World,
    commit_all,
    handle,
    new_task,
    play_round,
    recruit,
    refused,
    results_tree,
    reveal_all,
    start_round,
    submit_all,
)


def test_recruitment_deadline_lets_anyone_close_recruitment(world: World) -> None:
    task = new_task(world)
    opened = task.open_recruitment(world.requester)
    opened_at = world.chain.w3.eth.get_block(opened.receipt["blockNumber"])["timestamp"]
    assert task.deadline() == opened.event("StatusChanged")["deadline"] == opened_at + 100
    task.sign_up(world.workers[0])
    world.chain.increase_time(101)
    with refused("DeadlinePassed"):
        task.sign_up(world.workers[1])
    res = task.advance(world.outsider)
    assert res.event("StatusChanged")["to"] == Status.PENDING
    assert task.recruitment_closed()
    assert task.workers() == [world.workers[0].address]


def test_training_deadline_with_missing_workers(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=3)
    start_round(world, task)
    submit_all(task, workers[:2], samples=[100, 200])
    assert task.status() == Status.TRAINING
    with refused("DeadlineNotReached"):
        task.advance(world.outsider)
    world.chain.increase_time(101)
    task.advance(world.outsider)
    assert task.status() == Status.EVALUATING
    with refused("WrongStatus"):
        task.submit_training_results(workers[2], handle("late"), handle("late-keys"), 5)
    # the round goes on with the two who submitted
    tree = results_tree(workers[:2], samples=[100, 200], contributions=[1, 3])
    manifest = tree.manifest(500_000, b"\x02" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [manifest] * 3)
    reveal_all(task, validators, [manifest] * 3)
    task.finalize_round(world.outsider)
    claimed = task.claim_reward(
        workers[1], 1, tree.result_of(workers[1].address), tree.proof(workers[1].address)
    )
    assert claimed.event("RewardClaimed")["amount"] == WORKER_REWARD * 3 // 4


def test_non_revealing_validator_still_lets_the_majority_settle(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=3)
    start_round(world, task)
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(500_000, b"\x03" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [manifest] * 3)
    reveal_all(task, validators[:2], [manifest] * 2)  # the third never reveals
    assert task.status() == Status.REVEALING
    world.chain.increase_time(101)
    task.advance(world.outsider)
    fin = task.finalize_round(world.outsider)
    assert fin.event("RoundFinalized")["agreeingWeight"] == 2
    with refused("NoReward"):
        task.claim_validator_reward(validators[2])
    share = task.claim_validator_reward(validators[0]).event("RewardClaimed")["amount"]
    assert share == VALIDATOR_REWARD // 2


def test_evaluation_deadline_with_silent_committee_means_no_consensus(world: World) -> None:
    task = new_task(world)
    workers, _ = recruit(world, task, n_workers=2, n_validators=3)
    budget_before = task.budget()
    start_round(world, task)
    submit_all(task, workers)
    world.chain.increase_time(101)
    task.advance(world.outsider)  # EVALUATING -> REVEALING, nobody committed
    world.chain.increase_time(101)
    task.advance(world.outsider)  # REVEALING -> REWARDING
    fin = task.finalize_round(world.outsider)
    refund = fin.event("NoConsensus")["refunded"]
    assert refund == WORKER_REWARD + VALIDATOR_REWARD
    assert task.budget() == budget_before + refund
    assert task.last_consensus_round() == 0
    assert task.status() == Status.PENDING


def test_split_committee_pays_nobody_and_refunds_the_round(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=4)
    start_round(world, task)
    submit_all(task, workers)
    tree = results_tree(workers)
    m = tree.manifest(500_000, b"\x04" * 32, handle("agg"), handle("det"))
    manifests = [m, m, replace(m, accuracy=1), replace(m, accuracy=2)]  # 2 of 4 is not a majority
    commit_all(task, validators, manifests)
    reveal_all(task, validators, manifests)
    fin = task.finalize_round(world.outsider)
    assert fin.names() == ["NoConsensus", "StatusChanged"]
    with refused("NoReward"):
        task.claim_reward(workers[0], 1, tree.result_of(workers[0].address), tree.proof(workers[0].address))
    with refused("NoReward"):
        task.claim_validator_reward(validators[0])
    assert task.worker_escrow() == task.validator_escrow() == 0
    assert task.balance() == task.owed() == task.budget()


def test_requester_who_disappears_after_starting_a_round_still_pays(world: World) -> None:
    """Payment-default attack (paper 2.2): once a round starts, everybody else can finish it and be paid."""
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=3)
    start_round(world, task)
    # from here on the requester does nothing; the outsider drives the phases
    submit_all(task, workers)
    tree = results_tree(workers, contributions=[1, 1])
    m = tree.manifest(500_000, b"\x05" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [m] * 3)
    reveal_all(task, validators, [m] * 3)
    task.finalize_round(world.outsider)
    for w in workers:
        task.claim_reward(w, 1, tree.result_of(w.address), tree.proof(w.address))
    for v in validators:
        task.claim_validator_reward(v)
    # idle between rounds: anybody may terminate, releasing the committee's stake
    world.chain.increase_time(1001)
    res = task.advance(world.outsider)
    assert res.event("TaskTerminated")["reason"] == TerminationReason.Idle
    assert all(world.registry.validator_info(v.address).active_seats == 0 for v in validators)
    assert not world.registry.is_active_task(task.address)
    # what the requester is owed back (dust) stays withdrawable by it alone
    assert task.balance() == task.budget() == task.owed()


def test_unclaimed_rewards_return_after_the_claim_window(world: World) -> None:
    """What was not claimed goes back to the budget, but only once the task has terminated (rewards accrue
    over its rounds) and the claim window after that has closed."""
    task = new_task(world)
    workers, validators = recruit(world, task)
    played = play_round(world, task, workers, validators)
    w = workers[0]
    task.claim_reward(w, 1, played.tree.result_of(w.address), played.tree.proof(w.address))
    assert task.status() == Status.PENDING
    with refused("WrongStatus", actual=Status.PENDING):  # a later round's leaf still pays round 1
        task.release_unclaimed(world.outsider)
    assert task.claim_deadline() == 0
    stopped = task.stop_training(world.requester)
    stopped_at = world.chain.w3.eth.get_block(stopped.receipt["blockNumber"])["timestamp"]
    assert task.claim_deadline() == stopped_at + 1000
    with refused("ClaimWindowOpen", closesAt=stopped_at + 1000):
        task.release_unclaimed(world.outsider)
    world.chain.increase_time(1001)
    before = task.budget()
    unclaimed = task.worker_escrow() + task.validator_escrow()
    assert unclaimed == WORKER_REWARD + VALIDATOR_REWARD - played.tree.result_of(w.address).earned
    released = task.release_unclaimed(world.outsider).event("EscrowReleased")
    assert (released["round"], released["amount"]) == (0, unclaimed)
    assert task.budget() == before + unclaimed
    assert task.worker_escrow() == task.validator_escrow() == 0
    with refused("NothingToRelease"):
        task.release_unclaimed(world.outsider)
    late = workers[1]
    with refused("ClaimWindowClosed"):
        task.claim_reward(late, 1, played.tree.result_of(late.address), played.tree.proof(late.address))
    assert task.balance() == task.owed() == task.budget()


def test_claims_after_the_claim_window_are_refused(world: World) -> None:
    """Rewards stay claimable after the task terminates, until its claim window closes; after that no
    worker nor validator can claim, even while the unclaimed rewards are still in escrow."""
    task = new_task(world, max_rounds=1)
    workers, validators = recruit(world, task)
    played = play_round(world, task, workers, validators)
    assert task.status() == Status.TERMINATED
    finalized_at = world.chain.w3.eth.get_block(played.finalize.receipt["blockNumber"])["timestamp"]
    deadline = finalized_at + 1000
    assert task.claim_deadline() == deadline
    early, late = workers[0], workers[1]
    task.claim_reward(early, 1, played.tree.result_of(early.address), played.tree.proof(early.address))
    task.claim_validator_reward(validators[0])
    world.chain.increase_time(1001)
    escrows = task.worker_escrow(), task.validator_escrow()
    assert escrows[0] >= played.tree.result_of(late.address).earned > 0
    assert escrows[1] == task.validator_reward_of(validators[1].address) * 2 > 0
    with refused("ClaimWindowClosed", closedAt=deadline):
        task.claim_reward(late, 1, played.tree.result_of(late.address), played.tree.proof(late.address))
    with refused("ClaimWindowClosed", closedAt=deadline):
        task.claim_validator_reward(validators[1])
    assert (task.worker_escrow(), task.validator_escrow()) == escrows
    assert task.balance() == task.owed()


def test_stop_training_between_rounds_then_withdraw_everything(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task)
    play_round(world, task, workers, validators)
    task.fund(world.requester, 7)
    res = task.stop_training(world.requester)
    assert res.event("TaskTerminated")["reason"] == TerminationReason.Stopped
    assert not world.registry.is_active_task(task.address)
    task.withdraw(world.requester, task.budget())
    assert task.budget() == 0
    # only unclaimed rewards of round 1 remain
    assert task.balance() == task.owed() == task.worker_escrow() + task.validator_escrow()
