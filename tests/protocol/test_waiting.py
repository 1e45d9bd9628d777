"""What a participant with nothing due waits for: the duration in words (the phases are walked on the
real EVM in tests/web/test_own_server.py)."""

from __future__ import annotations

import pytest

from refiner.protocol.waiting import span


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (60, "1 min"),
        (250, "4 min 10 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (86400, "1 d"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
    ],
)
def test_a_duration_reads_in_its_two_largest_units(seconds: int, text: str) -> None:
    assert span(seconds) == text
