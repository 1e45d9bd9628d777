"""The protocol's order, written once: which phases are timed and when a task may be moved on."""

from refiner.protocol.phases import TIMED, advance_is_due, has_deadline

__all__ = ["TIMED", "advance_is_due", "has_deadline"]
