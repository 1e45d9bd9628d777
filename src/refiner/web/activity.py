"""Auto mode's activity feed: what the hosted agents did, what they wait for and why, as the page shows it.

A logging handler on the agents' logger keeps the last lines in memory (numbered, so the page asks only
for what is new); the same lines still reach the terminal through the usual logging tree.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    seq: int
    #: Seconds since the epoch.
    at: float
    level: str
    text: str


class Activity(logging.Handler):
    """The last `size` lines logged to it."""

    def __init__(self, size: int = 500) -> None:
        super().__init__(logging.INFO)
        self._entries: deque[Entry] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        with self._guard:
            self._entries.append(Entry(next(self._seq), record.created, record.levelname.lower(), text))

    def since(self, seq: int = 0) -> list[Entry]:
        """The kept entries numbered above `seq`, oldest first."""
        with self._guard:
            return [e for e in self._entries if e.seq > seq]

    def logger(self, name: str) -> logging.Logger:
        """A logger of its own that feeds this handler and, through `name`'s place in the logging tree,
        the terminal (two servers in one process do not see each other's lines)."""
        log = logging.Logger(name, logging.INFO)
        log.parent = logging.getLogger(name)
        log.addHandler(self)
        return log
