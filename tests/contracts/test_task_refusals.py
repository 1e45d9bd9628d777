"""Every call the task contract must refuse: wrong caller, wrong phase, double action, unregistered
participant, bad commitment, forged Merkle proof, claim twice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from refiner.chain import (
    Aggregation,
    ContractRevert,
    Durations,
    Manifest,
    Status,
    Task,
    WorkerResult,
    demo_account,
)
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import draw, wait_for_seed
from refiner.chain.earnings import carried
from refiner.sortition import prove
from tests.helpers import (
    FAST,
    STAKE,
    VALIDATOR_REWARD,
    WORKER_REWARD,
    World,
    commit_all,
    config,
    handle,
    new_task,
    play_round,
    recruit,
    refused,
    results_tree,
    reveal_all,
    salt_for,
    seat,
    start_round,
    submit_all,
)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"description": ""}, "description is empty"),
        ({"target_accuracy": 1.5}, "targetAccuracy above 1_000_000"),
        ({"max_rounds": 0}, "maxRounds is 0"),
        ({"max_workers": 0}, "maxWorkers is 0"),
        ({"committee_size": 0}, "committeeSize is 0"),
        ({"committee_size": 65}, "committeeSize above 64"),
        ({"committee_size": 148}, "committeeSize above 64"),
        ({"committee_size": 2**32 - 1}, "committeeSize above 64"),
        ({"epsilon": 0.0}, "epsilon is 0"),
        ({"aggregation": Aggregation.FedProx, "mu": 0.0}, "FedProx needs mu > 0"),
        ({"mu": 0.01}, "FedAvg takes no mu"),
        ({"durations": Durations(training=0)}, "every duration must be > 0"),
        ({"validator_reward": 2**96}, "validatorReward above 2^96 - 1"),
    ],
)
def test_invalid_config_is_refused_at_deployment(
    world: World, overrides: dict[str, object], reason: str
) -> None:
    with pytest.raises(ContractRevert) as exc:
        Task.deploy(world.chain, world.requester, world.registry.address, config(**overrides))
    assert exc.value.error == "InvalidConfig"
    assert exc.value.args_by_name == {"reason": reason}


@pytest.mark.parametrize("size", [1, 8, 64])
def test_committee_size_is_the_expected_seats_up_to_64(world: World, size: int) -> None:
    """τ is an expected seat count, not a member count; at most 64 (RefinerSortition.effectiveTau)."""
    task = new_task(world, committee_size=size)
    assert task.config().committee_size == size


def test_fedprox_config_is_kept(world: World) -> None:
    task = new_task(world, aggregation=Aggregation.FedProx, mu=0.01)
    assert task.config().aggregation == Aggregation.FedProx
    assert task.config().mu == 0.01


def test_recruitment_refusals(world: World) -> None:
    task = new_task(world, register=False, max_workers=2)
    with refused("NotRegisteredInRegistry"):
        task.open_recruitment(world.requester)
    world.registry.register_task(world.requester, task.address)
    with refused("NotRequester"):
        task.open_recruitment(world.outsider)
    with refused("WrongStatus"):
        task.sign_up(world.workers[0])
    task.open_recruitment(world.requester)
    with refused("WrongStatus"):
        task.open_recruitment(world.requester)
    with refused("NotRegisteredWorker"):
        task.sign_up(world.fresh[0])
    with refused("NotRegisteredWorker"):
        task.sign_up(world.validators[0])
    task.sign_up(world.workers[0])
    with refused("AlreadySignedUp"):
        task.sign_up(world.workers[0])
    task.sign_up(world.workers[1])
    with refused("WorkersFull"):
        task.sign_up(world.workers[2])
    seed = wait_for_seed(task)
    for account in (world.workers[3], world.fresh[0], world.requester):  # no validator, whatever proof
        with refused("NotRegisteredValidator"):
            task.claim_seat(account, prove(vrf_key_for(account), seed), 1)
    ticket = draw(task, world.registry, world.validators[0].address, vrf_key_for(world.validators[0]))
    with refused("NotRegisteredValidator"):  # nor with a validator's proof
        task.claim_seat(world.outsider, ticket.proof, ticket.seats)
    task.claim_seat(world.validators[0], ticket.proof, ticket.seats)
    with refused("AlreadyOnCommittee"):
        task.claim_seat(world.validators[0], ticket.proof, ticket.seats)
    seat(world, task, world.validators[1])
    assert task.committee() == {world.validators[0].address: 1, world.validators[1].address: 1}
    with refused("NotRequester"):
        task.close_recruitment(world.outsider)
    task.close_recruitment(world.requester)
    with refused("RecruitmentAlreadyOpened"):
        task.open_recruitment(world.requester)
    with refused("WrongStatus"):
        task.sign_up(world.workers[3])
    with refused("WrongStatus"):
        seat(world, task, world.validators[2])


def test_validator_without_enough_bonded_stake_is_not_seated(world: World) -> None:
    """Weight is the stake bonded before recruitment opened, in whole units: a validator who unbonded to
    under one unit before has weight 0; one who unbonds after the snapshot (it may, until seated) no
    longer has the stake its seats were drawn with; once seated it cannot unbond."""
    reg = world.registry
    before, after, seated = world.validators[3:6]
    reg.request_unbond(before, STAKE - reg.min_stake())  # still registered, at the minimum stake
    task = new_task(world)
    task.open_recruitment(world.requester)
    ticket = draw(task, reg, before.address, vrf_key_for(before))
    assert (ticket.stake_units, ticket.seats) == (0, 0)
    with refused("NotSelected"):
        task.claim_seat(before, ticket.proof, ticket.seats)

    reg.request_unbond(after, 1)
    ticket = draw(task, reg, after.address, vrf_key_for(after))
    assert ticket.seats == 1
    with refused("StakeTooLow"):
        task.claim_seat(after, ticket.proof, ticket.seats)

    seat(world, task, seated)
    with refused("SeatedOnActiveTask"):
        reg.request_unbond(seated, 1)
    assert task.committee() == {seated.address: 1}


def test_start_round_refusals(world: World) -> None:
    task = new_task(world)
    with refused("RecruitmentNotClosed"):
        start_round(world, task)
    task.open_recruitment(world.requester)
    task.close_recruitment(world.requester)
    with refused("NoWorkers"):
        start_round(world, task)

    task = new_task(world)
    task.open_recruitment(world.requester)
    task.sign_up(world.workers[0])
    task.close_recruitment(world.requester)
    with refused("NoCommittee"):
        start_round(world, task)

    task = new_task(world)
    recruit(world, task)
    with refused("NotRequester"):
        task.start_round(world.outsider, b"m", b"k", b"v", b"k", value=WORKER_REWARD + VALIDATOR_REWARD)
    before = world.chain.w3.eth.get_balance(world.requester.address)
    with refused("InsufficientBudget"):
        start_round(world, task, value=WORKER_REWARD + VALIDATOR_REWARD - 1)
    # refused by the gas estimate: nothing was sent, nothing was spent
    assert world.chain.w3.eth.get_balance(world.requester.address) == before
    assert task.balance() == 0
    start_round(world, task)
    with refused("WrongStatus"):
        start_round(world, task)


def test_training_refusals(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2)
    with refused("WrongStatus"):
        task.submit_training_results(workers[0], handle("u"), handle("k"), 10)
    start_round(world, task)
    with refused("NotSignedUp"):
        task.submit_training_results(world.workers[4], handle("u"), handle("k"), 10)
    with refused("NotSignedUp"):
        task.submit_training_results(validators[0], handle("u"), handle("k"), 10)
    with refused("ZeroSamples"):
        task.submit_training_results(workers[0], handle("u"), handle("k"), 0)
    task.submit_training_results(workers[0], handle("u"), handle("k"), 10)
    with refused("AlreadySubmitted"):
        task.submit_training_results(workers[0], handle("u2"), handle("k2"), 10)
    with refused("WrongStatus"):
        task.commit_manifest(validators[0], b"\x01" * 32)
    with refused("WrongStatus"):
        task.stop_training(world.requester)  # only between rounds
    with refused("NotRequester"):
        task.stop_training(world.outsider)
    world.chain.increase_time(101)
    with refused("DeadlinePassed"):
        task.submit_training_results(workers[1], handle("u"), handle("k"), 10)


def test_commit_and_reveal_refusals(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=3)
    start_round(world, task)
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(900_000, b"\x01" * 32, handle("a"), handle("d"))
    a, b, c = validators
    with refused("NotOnCommittee"):
        task.commit_manifest(world.validators[4], b"\x01" * 32)
    with refused("NotOnCommittee"):
        task.commit_manifest(workers[0], b"\x01" * 32)
    with refused("EmptyCommitment"):
        task.commit_manifest(a, b"\0" * 32)
    commitment_a = task.commitment_for(a.address, 1, manifest, salt_for(a, 1))
    task.commit_manifest(a, commitment_a)
    with refused("AlreadyCommitted"):
        task.commit_manifest(a, commitment_a)
    # b copies a's commitment (a manifest thief): it can commit the bytes but never reveal them
    task.commit_manifest(b, commitment_a)
    with refused("WrongStatus"):
        task.reveal_manifest(a, manifest, salt_for(a, 1))
    with refused("WrongStatus"):
        task.stop_training(world.requester)
    world.chain.increase_time(101)
    task.advance(world.outsider)  # c never committed
    assert task.status() == Status.REVEALING
    with refused("WrongStatus"):
        task.commit_manifest(c, task.commitment_for(c.address, 1, manifest, salt_for(c, 1)))
    with refused("CommitmentMismatch"):
        task.reveal_manifest(a, manifest, salt_for(b, 1))  # wrong salt
    with refused("CommitmentMismatch"):
        task.reveal_manifest(a, replace(manifest, accuracy=1), salt_for(a, 1))  # another manifest
    with refused("CommitmentMismatch"):
        task.reveal_manifest(b, manifest, salt_for(a, 1))  # the thief reveals a's manifest and salt
    with refused("NotCommitted"):
        task.reveal_manifest(c, manifest, salt_for(c, 1))
    task.reveal_manifest(a, manifest, salt_for(a, 1))
    with refused("AlreadyRevealed"):
        task.reveal_manifest(a, manifest, salt_for(a, 1))
    world.chain.increase_time(101)
    task.advance(world.outsider)
    task.finalize_round(world.outsider)
    # only a revealed (weight 1 of 3) → no consensus
    assert task.round_info(1).consensus is False


def test_claim_refusals(world: World) -> None:
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=4, n_validators=3)
    tree = results_tree(workers, contributions=[100, 200, -30, 400], accepted=[True, True, True, False])
    with refused("RoundNotFinalized"):
        task.claim_reward(workers[0], 1, tree.result_of(workers[0].address), tree.proof(workers[0].address))
    play_round(world, task, workers, validators, tree=tree, dissenters=1)
    w0, w1, w2, w3 = workers
    r0 = tree.result_of(w0.address)
    with refused("InvalidProof"):
        task.claim_reward(w0, 1, r0, tree.proof(w1.address))  # someone else's proof
    with refused("InvalidProof"):
        task.claim_reward(w0, 1, replace(r0, contribution=10_000), tree.proof(w0.address))  # inflated leaf
    with refused("InvalidProof"):
        task.claim_reward(w0, 1, r0, [b"\x42" * 32])
    with refused("InvalidProof"):  # samples are not stored on chain, but they are in the agreed leaf
        task.claim_reward(w0, 1, replace(r0, samples=r0.samples + 1), tree.proof(w0.address))
    with refused("NoReward"):
        task.claim_reward(w2, 1, tree.result_of(w2.address), tree.proof(w2.address))  # negative contribution
    with refused("NoReward"):
        task.claim_reward(w3, 1, tree.result_of(w3.address), tree.proof(w3.address))  # rejected update
    with refused("NotSignedUp", account=world.workers[5].address):  # a stranger presents w1's leaf
        task.claim_reward(world.workers[5], 1, tree.result_of(w1.address), tree.proof(w1.address))
    with refused("InvalidProof"):  # w1 claims w0's leaf as its own
        task.claim_reward(
            w1, 1, WorkerResult(w1.address, True, 2000, r0.contribution, r0.earned), tree.proof(w0.address)
        )
    task.claim_reward(w0, 1, r0, tree.proof(w0.address))
    with refused("AlreadyClaimed", account=w0.address, round=1):
        task.claim_reward(w0, 1, r0, tree.proof(w0.address))
    with refused("RoundNotFinalized", round=2):
        task.claim_reward(w1, 2, tree.result_of(w1.address), tree.proof(w1.address))
    dissenter = validators[-1]
    with refused("NoReward"):
        task.claim_validator_reward(dissenter)
    with refused("NotOnCommittee"):
        task.claim_validator_reward(world.validators[5])
    task.claim_validator_reward(validators[0])
    with refused("NoReward"):
        task.claim_validator_reward(validators[0])


def test_worker_cannot_claim_an_earlier_round_after_a_later_one_nor_inflate_its_earnings(
    world: World,
) -> None:
    """A leaf's `earned` covers every round through its own, so the round-2 leaf pays round 1 too: the
    round-1 leaf is refused after it, and `earned` is part of the agreed leaf (no proof for more)."""
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2)
    tree1 = play_round(world, task, workers, validators).tree
    tree2 = results_tree(workers, contributions=[300, 100], before=carried({}, tree1.results))
    play_round(world, task, workers, validators, tree=tree2)
    w = workers[0]
    r1, r2 = tree1.result_of(w.address), tree2.result_of(w.address)
    assert r2.earned == WORKER_REWARD // 3 + WORKER_REWARD * 3 // 4 == r1.earned + WORKER_REWARD * 3 // 4
    with refused("InvalidProof"):  # round 1's leaf claiming both rounds
        task.claim_reward(w, 1, replace(r1, earned=r2.earned), tree1.proof(w.address))
    with refused("InvalidProof"):
        task.claim_reward(w, 2, replace(r2, earned=r2.earned + 1), tree2.proof(w.address))
    paid = task.claim_reward(w, 2, r2, tree2.proof(w.address)).event("RewardClaimed")
    assert (paid["round"], paid["amount"]) == (2, r2.earned)
    assert task.worker_claims(w.address) == (2, r2.earned)
    with refused("AlreadyClaimed", account=w.address, round=1):
        task.claim_reward(w, 1, r1, tree1.proof(w.address))
    assert task.worker_claims(w.address) == (2, r2.earned)


def test_validator_that_commits_the_consensus_vote_key_without_revealing_is_not_paid(world: World) -> None:
    """A commitment is stored with its top bit set, which no vote key has: a member who commits the
    consensus vote key itself (it cannot open it) and never reveals does not count as agreeing."""
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=3)
    start_round(world, task)
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(900_000, b"\x06" * 32, handle("agg"), handle("det"))
    revealers, freeloader = validators[:2], validators[2]
    commit_all(task, revealers, [manifest] * 2)
    task.commit_manifest(freeloader, manifest.vote_key())
    assert task.ballot_of(1, freeloader.address) != manifest.vote_key()
    reveal_all(task, revealers, [manifest] * 2)
    world.chain.increase_time(101)
    task.advance(world.outsider)  # the freeloader never reveals
    fin = task.finalize_round(world.outsider)
    assert fin.event("RoundFinalized")["voteKey"] == manifest.vote_key()
    assert task.validator_reward_of(freeloader.address) == 0
    with refused("NoReward"):
        task.claim_validator_reward(freeloader)
    for v in revealers:
        assert task.claim_validator_reward(v).event("RewardClaimed")["amount"] == VALIDATOR_REWARD // 2
    assert task.validator_escrow() == 0
    assert task.balance() == task.owed()


def test_validator_claims_again_only_after_another_round_it_agreed_in_is_finalized(world: World) -> None:
    """A validator's claim pays every finalized round it agreed in and not paid yet: nothing more until
    another such round is finalized (not one it dissented in, not the one under way), then exactly its
    seat's share of that round."""
    task = new_task(world)
    workers, validators = recruit(world, task, n_workers=2, n_validators=3)
    v = validators[0]
    assert task.committee()[v.address] == 1
    play_round(world, task, workers, validators)
    assert task.claim_validator_reward(v).event("RewardClaimed")["amount"] == VALIDATOR_REWARD // 3
    with refused("NoReward"):
        task.claim_validator_reward(v)
    play_round(world, task, workers, [*validators[1:], v], dissenters=1)  # v dissents in round 2
    assert task.validator_unit(2) == VALIDATOR_REWARD // 2
    with refused("NoReward"):
        task.claim_validator_reward(v)
    start_round(world, task)
    submit_all(task, workers)
    manifest = results_tree(workers).manifest(900_000, b"\x07" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [manifest] * 3)
    reveal_all(task, validators, [manifest] * 3)
    assert task.status() == Status.REWARDING
    assert task.validator_reward_of(v.address) == 0
    with refused("NoReward"):  # round 3 is not finalized yet
        task.claim_validator_reward(v)
    task.finalize_round(world.outsider)
    assert task.validator_unit(3) == VALIDATOR_REWARD // 3
    assert task.validator_reward_of(v.address) == VALIDATOR_REWARD // 3
    paid = task.claim_validator_reward(v).event("RewardClaimed")
    assert (paid["round"], paid["amount"]) == (3, VALIDATOR_REWARD // 3)
    with refused("NoReward"):
        task.claim_validator_reward(v)


@pytest.mark.slow
def test_workers_on_either_side_of_a_submission_word_are_refused_independently(world: World) -> None:
    """A round's submissions are one bit per worker in words of 256 workers (by sign-up order): workers
    255, 256 and 257 straddle the first boundary; each one's submission, claim and refusals affect no
    other's."""
    accounts = [demo_account(f"bits-worker-{i}") for i in range(258)]
    for a in accounts:
        world.chain.fund(a.address, 10**18)
        world.registry.register_worker(a)
    task = new_task(world, max_workers=258, durations=replace(FAST, recruitment=7200, training=7200))
    task.open_recruitment(world.requester)
    for a in accounts:
        task.sign_up(a)
    validators = world.validators[:3]
    for v in validators:
        seat(world, task, v)
    task.close_recruitment(world.requester)
    start_round(world, task)
    last, absent, first = accounts[255:258]  # the last of word 0; the first two of word 1
    present = [a for a in accounts if a != absent]
    submit_all(task, present)
    for w in (last, first):
        with refused("AlreadySubmitted", worker=w.address):
            task.submit_training_results(w, handle("u2"), handle("k2"), 1)
    assert not task.submitted(1, absent.address)
    assert task.submitted_samples(1, absent.address) == 0
    world.chain.increase_time(7201)
    task.advance(world.outsider)  # `absent` never submits
    tree = results_tree(present)
    manifest = tree.manifest(900_000, b"\x01" * 32, handle("a"), handle("d"))
    commit_all(task, validators, [manifest] * 3)
    reveal_all(task, validators, [manifest] * 3)
    task.finalize_round(world.requester, manifest)
    task.claim_reward(first, 1, tree.result_of(first.address), tree.proof(first.address))
    assert task.submitted_samples(1, last.address) == 256_000  # samples come from the event
    assert task.submitted_samples(1, first.address) == 257_000
    assert task.worker_claims(first.address) == (1, tree.result_of(first.address).earned)
    assert task.worker_claims(last.address) == (0, 0)
    with refused("AlreadyClaimed", account=first.address):
        task.claim_reward(first, 1, tree.result_of(first.address), tree.proof(first.address))
    with refused("InvalidProof"):  # a leaf the committee never agreed on
        task.claim_reward(absent, 1, WorkerResult(absent.address, True, 1, 1, 1), tree.proof(first.address))
    with refused("InvalidProof"):  # nor someone else's
        task.claim_reward(absent, 1, tree.result_of(first.address), tree.proof(first.address))
    task.claim_reward(last, 1, tree.result_of(last.address), tree.proof(last.address))
    window = accounts[254:258]
    assert [task.submitted(1, w.address) for w in window] == [True, True, False, True]
    assert [task.worker_claims(w.address)[0] for w in window] == [0, 1, 0, 1]
    assert task.balance() == task.owed()


def test_requester_money_refusals(world: World) -> None:
    task = new_task(world, value=5 * WORKER_REWARD)
    assert task.budget() == 5 * WORKER_REWARD
    with refused("NotRequester"):
        task.fund(world.outsider, 1)
    with refused("NotRequester"):
        task.withdraw(world.outsider, 1)
    with refused("ZeroAmount"):
        task.fund(world.requester, 0)
    recruit(world, task)
    start_round(world, task, value=0)
    escrow = WORKER_REWARD + VALIDATOR_REWARD
    assert task.budget() == 5 * WORKER_REWARD - escrow
    # the round's escrow is not part of the budget: it cannot be withdrawn (payment-default attack)
    with refused("AmountExceedsBudget"):
        task.withdraw(world.requester, task.budget() + 1)
    task.withdraw(world.requester, task.budget())
    assert task.balance() == escrow == task.owed()
    with refused("WrongStatus"):
        task.stop_training(world.requester)


def test_advance_refusals(world: World) -> None:
    task = new_task(world)
    with refused("WrongStatus"):  # PENDING before recruitment has no deadline
        task.advance(world.outsider)
    task.open_recruitment(world.requester)
    with refused("DeadlineNotReached"):
        task.advance(world.outsider)
    workers, validators = world.workers[:1], world.validators[:1]
    task.sign_up(workers[0])
    seat(world, task, validators[0])
    task.close_recruitment(world.requester)
    start_round(world, task)
    submit_all(task, workers)
    m = results_tree(workers).manifest(1, b"\x01" * 32, handle("agg"), handle("det"))
    commit_all(task, validators, [m])
    reveal_all(task, validators, [m])
    assert task.status() == Status.REWARDING
    with refused("WrongStatus"):
        task.advance(world.outsider)
    with refused("NotConsensusManifest"):
        task.finalize_round(world.outsider, replace(m, accuracy=2))
    task.finalize_round(world.outsider, m)
    with refused("WrongStatus"):
        task.finalize_round(world.outsider, m)
    with refused("WrongStatus"):  # unclaimed rewards are released only after the task terminated
        task.release_unclaimed(world.outsider)


def test_terminated_task_refuses_everything(world: World) -> None:
    task = new_task(world)
    recruit(world, task)
    task.stop_training(world.requester)
    assert task.status() == Status.TERMINATED
    with refused("WrongStatus"):
        start_round(world, task)
    with refused("WrongStatus"):
        task.fund(world.requester, 1)
    with refused("WrongStatus"):
        task.stop_training(world.requester)
    with refused("WrongStatus"):
        task.advance(world.outsider)
    with refused("WrongStatus"):
        task.finalize_round(world.outsider, Manifest.empty())
