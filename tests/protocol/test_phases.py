"""The timed phases and `advance`'s rule, checked against the contract on the real EVM."""

from refiner.chain import Status
from refiner.protocol import advance_is_due, has_deadline
from tests.helpers import World, new_task, refused


def test_advance_is_due_exactly_when_the_contract_takes_it(world: World) -> None:
    task = new_task(world)
    assert task.status() is Status.PENDING and not has_deadline(task, Status.PENDING)
    task.open_recruitment(world.requester)
    status, deadline = task.status(), task.deadline()
    assert status is Status.RECRUITING and has_deadline(task, status)
    now = world.chain.now()
    assert not advance_is_due(task, status, now) and not advance_is_due(task, status, deadline)
    with refused("DeadlineNotReached"):
        task.advance(world.outsider)
    world.chain.increase_time(deadline - now + 1)
    assert advance_is_due(task, status, world.chain.now())
    task.advance(world.outsider)  # anybody may, once it is due
    assert task.status() is not Status.RECRUITING


def test_a_closed_recruitment_gives_pending_its_idle_deadline(world: World) -> None:
    task = new_task(world)
    task.open_recruitment(world.requester)
    task.close_recruitment(world.requester)  # nobody signed up: the task waits, then may be ended
    assert task.status() is Status.PENDING and task.recruitment_closed()
    assert has_deadline(task, Status.PENDING)
