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
