"""The task's state machine on the happy paths, and what each transition pays."""

from __future__ import annotations

from refiner.chain import Status, TerminationReason
from refiner.chain.earnings import carried
from tests.helpers import (
    ETH,
    STAKE,
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
    seat,
    start_round,
    submit_all,
)


def test_statuses_follow_the_paper(world: World) -> None:
    task = new_task(world)
    seen = [task.status()]
    task.open_recruitment(world.requester)
    seen.append(task.status())
    workers, validators = world.workers[:2], world.validators[:3]
    for w in workers:
        task.sign_up(w)
    for v in validators:
        seat(world, task, v)
    task.close_recruitment(world.requester)
    seen.append(task.status())
    start_round(world, task)
    seen.append(task.status())
    submit_all(task, workers)  # the last submission ends TRAINING
    seen.append(task.status())
    tree = results_tree(workers)
    manifest = tree.manifest(900_000, b"\x07" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [manifest] * 3)
    seen.append(task.status())
    reveal_all(task, validators, [manifest] * 3)
    seen.append(task.status())
    task.finalize_round(world.outsider)
    seen.append(task.status())
    assert seen == [
        Status.PENDING,
        Status.RECRUITING,
        Status.PENDING,
        Status.TRAINING,
        Status.EVALUATING,
        Status.REVEALING,
        Status.REWARDING,
        Status.PENDING,
    ]


def test_committee_is_seated_by_sortition_with_the_seats_won(world: World) -> None:
    """Validators claim their own seats (the requester plays no part); with τ ≥ W every validator wins
    its stake units, here one each."""
    task = new_task(world)
    opened = task.open_recruitment(world.requester)
    block = int(opened.receipt["blockNumber"])
    length = world.registry.epoch_length()
    seed_block = (block // length + 1) * length  # the next epoch's first block
    assert (task.snapshot_block(), task.seed_block()) == (seed_block - 1, seed_block)
    validators = world.validators[:4]
    added = [seat(world, task, v).event("CommitteeMemberAdded") for v in validators]
    assert [(e["validator"], e["weight"], e["stake"]) for e in added] == [
        (v.address, 1, STAKE) for v in validators
    ]
    task.close_recruitment(world.requester)
    assert task.committee() == {v.address: 1 for v in validators}
    assert task.total_weight() == 4
    assert world.registry.seats_of(task.address) == [v.address for v in validators]


def test_votes_and_validator_rewards_are_weighted_by_seats(world: World) -> None:
    """Stakes of 1, 2 and 4 ETH win 1, 2 and 4 seats. The 4-seat validator outvotes the other two
    together (4 of 7 > half), and agreeing validators share the reward in proportion to their seats."""
    small, middle, large = world.validators[:3]
    world.registry.bond(middle, 1 * ETH)
    world.registry.bond(large, 3 * ETH)
    task = new_task(world)
    task.open_recruitment(world.requester)
    workers = world.workers[:2]
    for w in workers:
        task.sign_up(w)
    for v in (small, middle, large):
        seat(world, task, v)
    task.close_recruitment(world.requester)
    assert task.committee() == {small.address: 1, middle.address: 2, large.address: 4}
    assert task.total_weight() == 7

    start_round(world, task)
    submit_all(task, workers)
    honest = results_tree(workers).manifest(900_000, b"\x09" * 32, handle("agg"), handle("det"))
    other = results_tree(workers).manifest(800_000, b"\x0a" * 32, handle("agg"), handle("det"))
    commit_all(task, [small, middle, large], [other, other, honest])
    reveal_all(task, [small, middle, large], [other, other, honest])
    fin = task.finalize_round(world.outsider)
    assert fin.event("RoundFinalized")["agreeingWeight"] == 4
    assert fin.event("RoundFinalized")["accuracy"] == 900_000
    assert task.claim_validator_reward(large).event("RewardClaimed")["amount"] == VALIDATOR_REWARD // 4 * 4

    # the next round: the small and the large validator agree (5 of 7), the middle one dissents
    start_round(world, task)
    submit_all(task, workers)
    r = task.current_round()
    commit_all(task, [small, middle, large], [honest, other, honest])
    reveal_all(task, [small, middle, large], [honest, other, honest])
    assert task.vote_weight_of(r, honest.vote_key()) == 5
    assert task.vote_weight_of(r, other.vote_key()) == 2
    fin = task.finalize_round(world.outsider)
    assert fin.event("RoundFinalized")["agreeingWeight"] == 5
    unit = VALIDATOR_REWARD // 5
    assert task.validator_unit(r) == unit
    # the small validator dissented in round 1: its claim pays round 2 only; the large one claimed round 1
    paid = [task.claim_validator_reward(v).event("RewardClaimed")["amount"] for v in (small, large)]
    assert paid == [unit, 4 * unit]
    assert task.balance() == task.owed()


def test_round_pays_workers_by_contribution_and_agreeing_validators_equally(world: World) -> None:
    task = new_task(world, max_rounds=1)
    workers, validators = recruit(world, task, n_workers=3, n_validators=3)
    tree = results_tree(workers, contributions=[100, 200, -50])
    played = play_round(world, task, workers, validators, tree=tree, dissenters=1)
    assert played.finalize.event("RoundFinalized")["agreeingWeight"] == 2
    assert task.status() == Status.TERMINATED

    paid = {}
    for w in workers[:2]:
        res = task.claim_reward(w, 1, tree.result_of(w.address), tree.proof(w.address))
        paid[w.address] = res.event("RewardClaimed")["amount"]
    assert paid == {
        workers[0].address: WORKER_REWARD * 100 // 300,
        workers[1].address: WORKER_REWARD * 200 // 300,
    }

    shares = [task.claim_validator_reward(v).event("RewardClaimed")["amount"] for v in validators[:2]]
    assert shares == [VALIDATOR_REWARD // 2] * 2
    # every payee claimed: the validators' dust went back to the budget at finalization, the workers'
    # (a wei here) stays in the worker escrow until the claim window closes, then is the requester's again
    dust = WORKER_REWARD - sum(paid.values())
    assert dust == 1
    assert (task.worker_escrow(), task.validator_escrow()) == (dust, 0)
    assert task.budget() == VALIDATOR_REWARD - sum(shares)
    assert task.balance() == task.owed()
    world.chain.increase_time(task.config().durations.claim + 1)
    released = task.release_unclaimed(world.outsider)
    assert released.event("EscrowReleased").args == {"round": 0, "amount": dust}
    assert (task.worker_escrow(), task.validator_escrow()) == (0, 0)
    assert task.budget() == WORKER_REWARD - sum(paid.values()) + VALIDATOR_REWARD - sum(shares)
    assert task.balance() == task.owed() == task.budget()


def test_max_rounds_terminates_and_leaves_registry(world: World) -> None:
    task = new_task(world, max_rounds=2)
    workers, validators = recruit(world, task)
    play_round(world, task, workers, validators)
    assert task.status() == Status.PENDING
    played = play_round(world, task, workers, validators)
    assert task.status() == Status.TERMINATED
    assert played.finalize.event("TaskTerminated")["reason"] == TerminationReason.MaxRounds
    assert not world.registry.is_active_task(task.address)
    assert all(world.registry.validator_info(v.address).active_seats == 0 for v in validators)


def test_target_accuracy_terminates(world: World) -> None:
    task = new_task(world, target_accuracy=0.95)
    workers, validators = recruit(world, task)
    played = play_round(world, task, workers, validators, accuracy=950_000)
    assert task.status() == Status.TERMINATED
    assert played.finalize.event("TaskTerminated")["reason"] == TerminationReason.TargetReached
    assert world.registry.active_tasks() == []


def test_one_claim_after_three_rounds_pays_every_round(world: World) -> None:
    """A worker that claims once, with its round-3 leaf (whose `earned` adds up rounds 1-3), is paid
    exactly what a claim after each round would have paid in all; a validator that claims once gets its
    share of each round it agreed in. An older round's leaf is refused after a newer one."""
    task = new_task(world, max_rounds=3)
    workers, validators = recruit(world, task, n_workers=3, n_validators=3)
    contributions = [[100, 200, 300], [300, -50, 100], [100, 100, 100]]
    dissenters = [0, 1, 0]  # the last validator dissents in round 2
    earned: dict[str, int] = {}
    trees = []
    for round_contributions, dissent in zip(contributions, dissenters, strict=True):
        tree = results_tree(workers, contributions=round_contributions, before=earned)
        play_round(world, task, workers, validators, tree=tree, dissenters=dissent)
        earned = carried(earned, tree.results)
        trees.append(tree)
    assert task.status() == Status.TERMINATED
    w = workers[0]
    shares = [WORKER_REWARD * 100 // 600, WORKER_REWARD * 300 // 400, WORKER_REWARD * 100 // 300]

    # three claims, one per round's leaf (undone afterwards), pay a round each
    snapshot = world.chain.snapshot()
    claims = [
        task.claim_reward(w, r, tree.result_of(w.address), tree.proof(w.address))
        for r, tree in enumerate(trees, start=1)
    ]
    per_round = [c.event("RewardClaimed")["amount"] for c in claims]
    world.chain.revert(snapshot)
    assert per_round == shares

    # one claim with the round-3 leaf pays the same in all
    leaf = trees[2].result_of(w.address)
    assert leaf.earned == sum(shares)
    once = task.claim_reward(w, 3, leaf, trees[2].proof(w.address))
    assert once.event("RewardClaimed").args == {"round": 3, "account": w.address, "amount": sum(per_round)}
    assert task.worker_claims(w.address) == (3, sum(shares))
    for r in (1, 2, 3):  # no round is paid twice
        with refused("AlreadyClaimed", account=w.address, round=r):
            task.claim_reward(w, r, trees[r - 1].result_of(w.address), trees[r - 1].proof(w.address))

    # the validators: each round's unit times the seat, for the rounds each agreed in
    units = [task.validator_unit(r) for r in (1, 2, 3)]
    assert units == [VALIDATOR_REWARD // 3, VALIDATOR_REWARD // 2, VALIDATOR_REWARD // 3]
    agreeing, dissenter = validators[0], validators[2]
    assert task.validator_reward_of(agreeing.address) == sum(units)
    claimed = task.claim_validator_reward(agreeing).event("RewardClaimed").args
    assert claimed == {"round": 3, "account": agreeing.address, "amount": sum(units)}
    claimed = task.claim_validator_reward(dissenter).event("RewardClaimed").args
    assert claimed == {"round": 3, "account": dissenter.address, "amount": units[0] + units[2]}
    with refused("NoReward"):
        task.claim_validator_reward(agreeing)
    assert task.balance() == task.owed()
