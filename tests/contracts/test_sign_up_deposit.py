"""Issue 13: a worker slot costs a sign-up deposit, so that squatting the `maxWorkers` slots (free
identities that sign up and never train, leaving the requester nobody to train with) costs the squatter.
The deposit comes back with the round-1 submission, is forfeited to the requester's budget by workers that
submit nothing in round 1, and is refundable to every worker if the task ends before round 1."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from refiner.chain import Status, Task, TxResult
from tests.helpers import World, new_task, play_round, recruit, refused, seat, start_round, submit_all

DEPOSIT = 10**16 + 3


def balance(world: World, account: LocalAccount) -> int:
    return int(world.chain.w3.eth.get_balance(account.address))


def fee(result: TxResult) -> int:
    return int(result.receipt["gasUsed"]) * int(result.receipt["effectiveGasPrice"])


def exact(world: World, task: Task) -> None:
    """The task holds what it owes: its budget, the deposits, the task's reward escrows and the running
    round's rewards (escrowed from startRound until the round is finalized)."""
    r = task.current_round()
    cfg = task.config()
    running = cfg.worker_reward + cfg.validator_reward if r and not task.round_info(r).finalized else 0
    assert (
        task.balance()
        == task.owed()
        == task.budget() + task.deposits_held() + task.worker_escrow() + task.validator_escrow() + running
    )


def deposit_task(world: World) -> Task:
    task = new_task(world, sign_up_deposit=DEPOSIT)
    assert task.config().sign_up_deposit == DEPOSIT
    return task


@pytest.mark.parametrize("sent", [0, DEPOSIT - 1, DEPOSIT + 1])
def test_sign_up_takes_exactly_the_deposit(world: World, sent: int) -> None:
    task = deposit_task(world)
    task.open_recruitment(world.requester)
    with refused("WrongDeposit", sent=sent, required=DEPOSIT):
        task.sign_up(world.workers[0], deposit=sent)
    assert not task.workers()
    result = task.sign_up(world.workers[0])
    assert result.names() == ["WorkerSignedUp"]
    assert task.deposits_held() == DEPOSIT
    exact(world, task)


def test_honest_workers_get_their_deposit_back_with_their_round_1_submission(world: World) -> None:
    task = deposit_task(world)
    workers, _ = recruit(world, task, n_workers=3)
    assert task.deposits_held() == 3 * DEPOSIT
    start_round(world, task)
    budget = task.budget()
    for i, w in enumerate(workers):
        before = balance(world, w)
        submitted = task.submit_training_results(w, b"\x01" * 36, b"\x02" * 36, 1000)
        assert "DepositRefunded" not in submitted.names()  # the round-1 submission is the record
        assert balance(world, w) == before + DEPOSIT - fee(submitted)
        assert task.deposits_held() == (2 - i) * DEPOSIT
        exact(world, task)
    assert task.status() is Status.EVALUATING and task.budget() == budget
    with refused("WrongStatus"):
        task.refund_deposit(workers[0])


def test_a_round_2_submission_pays_no_deposit_back(world: World) -> None:
    task = deposit_task(world)
    workers, validators = recruit(world, task, n_workers=2)
    play_round(world, task, workers, validators)
    start_round(world, task)
    before = balance(world, workers[0])
    submit = task.submit_training_results(workers[0], b"\x01" * 36, b"\x02" * 36, 1000)
    assert balance(world, workers[0]) == before - fee(submit)
    assert task.deposits_held() == 0
    exact(world, task)


def test_squatters_that_never_submit_lose_their_deposit_to_the_requesters_budget(world: World) -> None:
    """Two squatters take two of three slots and never train: round 1's training ends at its deadline,
    their deposits go to the budget (which the requester can withdraw); the honest worker's came back."""
    task = new_task(world, sign_up_deposit=DEPOSIT, max_workers=3)
    honest, squatters = world.workers[0], world.workers[1:3]
    task.open_recruitment(world.requester)
    for w in [honest, *squatters]:
        task.sign_up(w)
    with refused("WorkersFull"):
        task.sign_up(world.workers[3], deposit=DEPOSIT)  # the slots are taken
    seat(world, task, world.validators[0])
    task.close_recruitment(world.requester)
    start_round(world, task)
    before = {w.address: balance(world, w) for w in squatters}
    submit_all(task, [honest])
    budget = task.budget()
    world.chain.increase_time(task.config().durations.training + 1)
    ended = task.advance(world.outsider)
    assert ended.event("DepositsForfeited").args == {
        "workers": 2,
        "amount": 2 * DEPOSIT,
        "budget": budget + 2 * DEPOSIT,
    }
    assert task.status() is Status.EVALUATING
    assert task.budget() == budget + 2 * DEPOSIT and task.deposits_held() == 0
    exact(world, task)
    for w in squatters:  # nothing to take back
        with refused("WrongStatus"):
            task.refund_deposit(w)
        assert balance(world, w) == before[w.address]
    withdrawn = task.withdraw(world.requester, task.budget())
    assert withdrawn.event("Withdrawn")["amount"] == budget + 2 * DEPOSIT
    exact(world, task)


def test_every_submitter_leaves_nothing_to_forfeit(world: World) -> None:
    task = deposit_task(world)
    workers, _ = recruit(world, task, n_workers=2)
    start_round(world, task)
    submit_all(task, workers)
    assert task.get_events("DepositsForfeited") == []
    assert task.deposits_held() == 0
    exact(world, task)


@pytest.mark.parametrize("how", ["stopped", "idle"])
def test_a_task_ending_before_round_1_lets_every_worker_reclaim_its_deposit(world: World, how: str) -> None:
    task = deposit_task(world)
    workers, _ = recruit(world, task, n_workers=3)
    for w in workers:  # not before the task has ended
        with refused("WrongStatus"):
            task.refund_deposit(w)
    if how == "idle":
        world.chain.increase_time(task.config().durations.idle + 1)
        task.advance(world.outsider)
    else:
        task.stop_training(world.requester)
    assert task.status() is Status.TERMINATED
    for i, w in enumerate(workers):
        before = balance(world, w)
        refunded = task.refund_deposit(w)
        assert refunded.event("DepositRefunded").args == {"worker": w.address, "amount": DEPOSIT}
        assert balance(world, w) == before + DEPOSIT - fee(refunded)
        assert task.deposits_held() == (2 - i) * DEPOSIT
        exact(world, task)
        with refused("DepositNotRefundable", worker=w.address):
            task.refund_deposit(w)  # once only
    for other in (world.workers[4], world.outsider):
        with refused("DepositNotRefundable", worker=other.address):
            task.refund_deposit(other)
    assert task.balance() == task.budget()


def test_no_deposit_no_refund(world: World) -> None:
    task = new_task(world)
    workers, _ = recruit(world, task, n_workers=1)
    assert task.deposits_held() == 0
    task.stop_training(world.requester)
    with refused("DepositNotRefundable", worker=workers[0].address):
        task.refund_deposit(workers[0])


def test_a_deposit_of_2_to_the_72_wei_or_more_is_refused_at_deployment(world: World) -> None:
    with refused("InvalidConfig", reason="signUpDeposit above 2^72 - 1"):
        new_task(world, sign_up_deposit=2**72, max_workers=2)
    assert new_task(world, sign_up_deposit=2**72 - 1).deposits_held() == 0


def test_after_round_1_nothing_is_refundable(world: World) -> None:
    task = new_task(world, sign_up_deposit=DEPOSIT, max_rounds=1)
    workers, validators = recruit(world, task, n_workers=2)
    play_round(world, task, workers, validators)
    assert task.status() is Status.TERMINATED
    for w in workers:  # each was paid back with its submission
        with refused("DepositNotRefundable", worker=w.address):
            task.refund_deposit(w)
    exact(world, task)
