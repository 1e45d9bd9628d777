"""The Task wrapper finds where to scan a task's events from on its own: the task records its
deployment block (public nodes cap eth_getLogs ranges, so scanning from genesis is not an option)."""

from __future__ import annotations

from refiner.chain import Task
from tests.helpers import World, new_task


def test_a_task_opened_by_address_scans_its_events_from_its_deployment_block(world: World) -> None:
    world.chain.mine(5)
    deployed = new_task(world)
    opened = Task(world.chain, deployed.address)
    assert opened.from_block == deployed.from_block > 5
    assert opened.from_block == int(opened.contract.functions.createdBlock().call())
    assert [e.name for e in opened.get_events("Funded")] == [e.name for e in deployed.get_events("Funded")]


def test_an_address_without_a_task_opens_with_a_scan_from_genesis(world: World) -> None:
    assert Task(world.chain, world.registry.address).from_block == 0


def test_the_workers_are_read_once_recruitment_has_closed(world: World) -> None:
    """`workers()` returns every address (O(N) a call, and every participant's `due` asks it): once
    recruitment has closed they can no longer change, and the wrapper stops asking; `signed_up` asks
    about one account only."""
    task = new_task(world)
    task.open_recruitment(world.requester)
    task.sign_up(world.workers[0])
    assert task.workers() == [world.workers[0].address]
    task.sign_up(world.workers[1])
    assert task.workers() == [world.workers[0].address, world.workers[1].address]  # still recruiting
    assert task.signed_up(world.workers[1].address) and not task.signed_up(world.workers[2].address)
    task.close_recruitment(world.requester)
    assert len(task.workers()) == 2
    views = world.chain.views
    assert views is not None
    world.chain.mine(1)  # a new block: a view asked now goes to the EVM
    asked = views.misses + views.hits
    assert task.workers() == [world.workers[0].address, world.workers[1].address]
    assert views.misses + views.hits == asked  # answered by the wrapper, not the chain
    workers = task.workers()
    workers.append("0x0")  # a caller's copy
    assert len(task.workers()) == 2
