"""The protocol's order, written once: which phases are timed, when a task may be moved on, and which
steps are due for a participant now (and why a step is not)."""

from refiner.protocol.due import (
    OPTIONAL,
    STEPS,
    Due,
    NotDue,
    Role,
    Step,
    chain_now,
    due,
    why_not,
)
from refiner.protocol.phases import TIMED, advance_is_due, has_deadline
from refiner.protocol.waiting import waiting_for

__all__ = [
    "OPTIONAL",
    "STEPS",
    "TIMED",
    "Due",
    "NotDue",
    "Role",
    "Step",
    "advance_is_due",
    "chain_now",
    "due",
    "has_deadline",
    "waiting_for",
    "why_not",
]
