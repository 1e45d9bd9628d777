"""The embedded chain answers a repeated view from memory, and asks the EVM again after anything that may
have changed the state: a transaction, a clock jump, a revert."""

from __future__ import annotations

from refiner.chain import Status
from refiner.chain.view_cache import ViewCache
from tests.helpers import World, new_task


def _views(world: World) -> ViewCache:
    views = world.chain.views
    assert views is not None  # the embedded chain keeps them
    return views


def test_a_repeated_view_is_answered_from_memory_until_a_transaction(world: World) -> None:
    views, task = _views(world), new_task(world)
    assert task.status() is Status.PENDING
    misses = views.misses
    for _ in range(3):
        assert task.status() is Status.PENDING
    assert views.misses == misses  # asked once
    task.open_recruitment(world.requester)
    assert task.status() is Status.RECRUITING  # asked again, with the new answer
    assert views.misses > misses


def test_a_clock_jump_and_a_revert_are_changes_too(world: World) -> None:
    views, task = _views(world), new_task(world)
    snapshot = world.chain.snapshot()
    task.open_recruitment(world.requester)
    assert task.status() is Status.RECRUITING
    misses = views.misses
    world.chain.increase_time(10)
    assert task.status() is Status.RECRUITING and views.misses == misses + 1
    world.chain.revert(snapshot)
    assert task.status() is Status.PENDING  # not the answer kept from before the revert


def test_a_caller_changing_an_answer_changes_only_its_own_copy(world: World) -> None:
    views, task = _views(world), new_task(world)
    task.open_recruitment(world.requester)
    task.sign_up(world.workers[0])
    mine = task.workers()
    mine.append("0x0000000000000000000000000000000000000001")
    hits = views.hits
    # two views answered from the cache: recruitmentClosed (the wrapper keeps the workers once it is),
    # then workers, whose kept answer the caller's append did not change
    assert task.workers() == [world.workers[0].address] and views.hits == hits + 2
