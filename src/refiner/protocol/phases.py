"""The task's timed phases and when anybody may call ``advance`` (contracts/RefinerTask.sol's rule).

RECRUITING, TRAINING, EVALUATING and REVEALING end at their deadline; PENDING has one too once
recruitment has closed (the idle deadline after which a task that cannot start is terminated). After a
deadline the first ``advance`` call wins; every agent, the web services and the simulations ask here.
"""

from __future__ import annotations

from refiner.chain import Status, Task

#: Phases whose deadline `advance` may pass.
TIMED = (Status.RECRUITING, Status.TRAINING, Status.EVALUATING, Status.REVEALING)


def has_deadline(task: Task, status: Status) -> bool:
    """Whether `task`, in `status`, has a deadline that `advance` passes."""
    return status in TIMED or (status is Status.PENDING and task.recruitment_closed())


def advance_is_due(task: Task, status: Status, now: int) -> bool:
    """Whether `advance` succeeds at time `now` (seconds, as the next block sees them)."""
    return has_deadline(task, status) and now > task.deadline()
