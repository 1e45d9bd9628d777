"""What a participant with nothing due on a task is waiting for, in words (the page and auto mode's
activity feed say it): whose move it is, and when the phase's deadline lets anybody move the task on."""

from __future__ import annotations

from refiner.chain import Status, Task
from refiner.protocol.due import chain_now
from refiner.protocol.phases import has_deadline

#: Who moves each phase on.
WAITING = {
    Status.PENDING: "the requester to open recruitment",
    Status.RECRUITING: "recruitment to close (workers sign up and validators claim their seats)",
    Status.TRAINING: "the workers' updates",
    Status.EVALUATING: "the validators' commitments",
    Status.REVEALING: "the validators' reveals",
    Status.REWARDING: "somebody to finalize the round",
}
ENDED = "nothing left to wait for: the task has ended"
BETWEEN_ROUNDS = "the requester to start the next round or stop"


def waiting_for(task: Task, now: int | None = None) -> str:
    """``waiting for the workers' updates (the deadline passes in 4 min 10 s)`` and the like."""
    status = task.status()
    if status is Status.TERMINATED:
        return ENDED
    what = WAITING[status]
    if status is Status.PENDING and task.recruitment_closed():
        what = BETWEEN_ROUNDS
    text = f"waiting for {what}"
    if has_deadline(task, status):
        left = task.deadline() - (chain_now(task) if now is None else now)
        ends = "the task ends" if status is Status.PENDING else "the phase ends"
        text += f" ({ends} in {span(left)})" if left >= 0 else f" (its deadline passed {span(-left)} ago)"
    return text


def span(seconds: int) -> str:
    """A duration for people: ``45 s``, ``4 min 10 s``, ``2 h 5 min``, ``3 d 4 h``."""
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {m} min" if m else f"{hours} h"
    days, h = divmod(hours, 24)
    return f"{days} d {h} h" if h else f"{days} d"
