"""The block cursor delivers each log once, re-delivers what a reorganisation replaced, starts over when
the chain was reset below it, and pages through long ranges."""

from __future__ import annotations

import logging

import pytest
from web3.types import LogReceipt

from refiner.agents import cursor as cursor_module
from refiner.agents.cursor import BlockCursor
from refiner.chain import Task
from tests.helpers import World, new_task


def amounts(task: Task, logs: list[LogReceipt]) -> list[int]:
    return [int(task.contract.events.Funded().process_log(entry)["args"]["amount"]) for entry in logs]


def test_logs_are_delivered_once_and_in_order(world: World) -> None:
    task = new_task(world)
    cursor = BlockCursor(world.chain, [task.address], task.from_block)
    assert cursor.poll() == []
    task.fund(world.requester, 1)
    task.fund(world.requester, 2)
    assert amounts(task, cursor.poll()) == [1, 2]
    assert cursor.poll() == []
    task.fund(world.requester, 3)
    assert amounts(task, cursor.poll()) == [3]


def test_a_reorganisation_redelivers_the_replaced_blocks(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    task = new_task(world)
    cursor = BlockCursor(world.chain, [task.address], task.from_block)
    task.fund(world.requester, 1)
    assert amounts(task, cursor.poll()) == [1]
    fork = world.chain.snapshot()
    task.fund(world.requester, 2)
    assert amounts(task, cursor.poll()) == [2]
    world.chain.revert(fork)  # the block holding "2" is replaced by one holding "3"
    task.fund(world.requester, 3)
    with caplog.at_level(logging.WARNING):
        assert amounts(task, cursor.poll()) == [3]
    assert "reorganised" in caplog.text
    assert cursor.poll() == []


def test_a_chain_reset_below_the_cursor_starts_over(world: World, caplog: pytest.LogCaptureFixture) -> None:
    start = world.chain.w3.eth.block_number + 1
    before = world.chain.snapshot()
    task = new_task(world)
    cursor = BlockCursor(world.chain, [task.address], start)
    task.fund(world.requester, 1)
    assert amounts(task, cursor.poll()) == [1]
    world.chain.revert(before)  # e.g. a dev node restarted without its state
    with caplog.at_level(logging.WARNING):
        assert cursor.poll() == []
    assert "reset" in caplog.text
    assert cursor.next_block <= world.chain.w3.eth.block_number + 1


def test_long_ranges_are_read_in_pages(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cursor_module, "MAX_RANGE", 2)
    task = new_task(world)
    cursor = BlockCursor(world.chain, [task.address], task.from_block)
    for i in range(1, 6):
        task.fund(world.requester, i)
    seen: list[int] = []
    for _ in range(10):
        seen += amounts(task, cursor.poll())
    assert seen == [1, 2, 3, 4, 5]


def test_a_task_added_later_is_caught_up_from_its_first_block(world: World) -> None:
    first = new_task(world)
    cursor = BlockCursor(world.chain, [first.address], first.from_block)
    second = new_task(world)
    second.fund(world.requester, 7)
    assert cursor.poll() == []
    cursor.add(second.address, from_block=second.from_block)
    assert amounts(second, cursor.poll()) == [7]
