"""`due` and `why_not` walked through a whole round on the real EVM: each step is listed exactly when the
contract takes it, and a step it does not list is refused by the contract too."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from eth_account.signers.local import LocalAccount

from refiner.chain import Status, Task
from refiner.chain.committee import wait_for_seed
from refiner.protocol import Role, Step, due, why_not
from tests.helpers import (
    World,
    commit_all,
    handle,
    new_task,
    refused,
    results_tree,
    reveal_all,
    salt_for,
    seat,
    start_round,
    submit_all,
)

R, W, V = Role.REQUESTER, Role.WORKER, Role.VALIDATOR


def steps(task: Task, account: LocalAccount, role: Role, settled: tuple[int, ...] = ()) -> list[str]:
    return [f"{d.step.value}@{d.round}" for d in due(task, account.address, role, settled=settled)]


def test_a_round_s_steps_fall_due_in_the_protocol_s_order(world: World) -> None:
    task = new_task(world, max_workers=2)
    w1, w2, w3 = world.workers[:3]
    v1, v2, v3 = world.validators[:3]
    assert steps(task, world.requester, R) == ["open_recruitment@0", "stop_training@0"]
    assert steps(task, w1, W) == [] and steps(task, v1, V) == []
    assert steps(task, world.outsider, R) == []  # not its task

    task.open_recruitment(world.requester)
    assert steps(task, world.requester, R) == ["close_recruitment@0"]
    assert steps(task, w1, W) == ["sign_up@0"]
    assert steps(task, v1, V) == []  # the sortition seed block is not mined yet
    wait_for_seed(task)
    assert steps(task, v1, V) == ["claim_seat@0"]
    task.sign_up(w1)
    task.sign_up(w2)
    assert steps(task, w1, W) == []  # signed up
    assert steps(task, w3, W) == []  # the task is full
    assert "all the workers it takes" in why_not(task, w3.address, W, Step.SIGN_UP).reason  # type: ignore[union-attr]
    with refused("WorkersFull"):
        task.sign_up(w3)
    for v in (v1, v2, v3):
        seat(world, task, v)
    assert steps(task, v1, V) == []
    task.close_recruitment(world.requester)
    assert steps(task, world.requester, R) == ["start_round@0", "stop_training@0"]

    start_round(world, task)
    assert steps(task, w1, W) == ["submit_training_results@1"]
    assert steps(task, v1, V) == [] and steps(task, world.requester, R) == []
    refusal = why_not(task, v1.address, V, Step.COMMIT_MANIFEST)
    assert refusal is not None and "while EVALUATING; the task is TRAINING" in refusal.reason
    with refused("WrongStatus"):
        task.commit_manifest(v1, bytes(31) + b"\1")
    submit_all(task, [w1, w2])
    assert steps(task, w1, W) == []
    assert steps(task, v1, V) == ["commit_manifest@1"]

    tree = results_tree([w1, w2], contributions=[100, 0])
    honest = tree.manifest(900_000, hashlib.sha256(b"m").digest(), handle("agg"), handle("det"))
    commit_all(task, [v1, v2], [honest, honest])
    assert steps(task, v1, V) == [] and steps(task, v3, V) == ["commit_manifest@1"]
    commit_all(task, [v3], [replace(honest, accuracy=899_999)])
    assert steps(task, v1, V) == ["reveal_manifest@1"]
    reveal_all(task, [v1, v2], [honest, honest])
    assert steps(task, v1, V) == []
    with refused("AlreadyRevealed"):
        task.reveal_manifest(v1, honest, salt_for(v1, 1))
    # v3 does not reveal: once the deadline has passed only `advance` is due, for anybody
    assert steps(task, v3, V) == ["reveal_manifest@1"] and steps(task, w1, W) == []
    world.chain.increase_time(task.deadline() - world.chain.now() + 1)
    assert steps(task, v3, V) == ["advance@1"] and steps(task, w1, W) == ["advance@1"]
    with refused("DeadlinePassed"):
        task.reveal_manifest(v3, replace(honest, accuracy=899_999), salt_for(v3, 1))
    task.advance(world.outsider)

    assert task.status() is Status.REWARDING
    assert steps(task, world.requester, R) == ["finalize_round@1"]
    assert steps(task, v1, V) == ["finalize_round@1"]
    assert steps(task, w1, W) == []  # anybody may finalize, but workers do not wait for it
    assert why_not(task, w1.address, W, Step.FINALIZE_ROUND) is None
    task.finalize_round(world.requester, honest)

    # settled: a claim is due for each worker that submitted and each validator that agreed
    assert "claim_reward@1" in steps(task, w1, W) and "claim_reward@1" in steps(task, w2, W)
    assert steps(task, v1, V) == ["claim_reward@1"]
    assert steps(task, v3, V) == []  # it did not reveal
    refusal = why_not(task, v3.address, V, Step.CLAIM_REWARD, round_=1)
    assert refusal is not None and "has no validator reward to claim" in refusal.reason
    with refused("NoReward"):
        task.claim_validator_reward(v3)
    task.claim_validator_reward(v1)
    assert steps(task, v1, V) == []
    task.claim_reward(w1, 1, tree.result_of(w1.address), tree.proof(w1.address))
    assert "claim_reward@1" not in steps(task, w1, W)
    assert "claim_reward@1" not in steps(task, w2, W, settled=(1,))  # the caller knows it is unpaid


def test_refusals_say_whether_the_account_may_ever_take_the_step(world: World) -> None:
    task = new_task(world)
    task.open_recruitment(world.requester)
    worker, validator = world.workers[0], world.validators[0]
    task.sign_up(worker)
    seat(world, task, validator)
    task.close_recruitment(world.requester)
    start_round(world, task)

    outsider = why_not(task, world.workers[1].address, W, Step.SUBMIT_TRAINING_RESULTS)
    assert outsider is not None and outsider.standing and "has not signed up" in outsider.reason
    not_yet = why_not(task, validator.address, V, Step.REVEAL_MANIFEST)
    assert not_yet is not None and not not_yet.standing
    stranger = why_not(task, world.validators[1].address, V, Step.COMMIT_MANIFEST)
    assert stranger is not None and stranger.standing and "not on this task's committee" in stranger.reason
    impostor = why_not(task, world.outsider.address, R, Step.STOP_TRAINING)
    assert impostor is not None and impostor.standing
    wrong_role = why_not(task, worker.address, W, Step.COMMIT_MANIFEST)
    assert wrong_role is not None and wrong_role.standing and "a worker does not" in wrong_role.reason
    assert why_not(task, worker.address, W, Step.SUBMIT_TRAINING_RESULTS) is None
    with refused("NotSignedUp"):
        task.submit_training_results(world.workers[1], handle("u"), handle("k"), 10)


def test_a_late_worker_is_not_told_to_sign_up(world: World) -> None:
    task = new_task(world)
    task.open_recruitment(world.requester)
    world.chain.increase_time(task.deadline() - world.chain.now() + 1)
    refusal = why_not(task, world.workers[0].address, W, Step.SIGN_UP)
    assert refusal is not None and "deadline has passed" in refusal.reason
    with refused("DeadlinePassed"):
        task.sign_up(world.workers[0])
    assert steps(task, world.workers[0], W) == ["advance@0"]
    assert steps(task, world.requester, R) == ["close_recruitment@0", "advance@0"]
