import math

import pytest

from refiner.units import ETH, MAX_PPM, ONE, ether, from_fixed, quantize, to_fixed


def test_fixed_point_round_trips_and_refuses_what_it_cannot_hold() -> None:
    assert to_fixed(0.98765) == 987_650 and from_fixed(to_fixed(1.5)) == 1.5 and ONE == 10**6
    with pytest.raises(ValueError, match="too large"):
        to_fixed(math.inf)
    with pytest.raises(ValueError):
        to_fixed(math.nan)


def test_quantize_rounds_to_the_grid_and_clamps() -> None:
    assert quantize(0.123456) == 123_460 and quantize(-0.000004) == 0
    assert quantize(math.nan) == MAX_PPM and quantize(-math.inf) == -MAX_PPM


def test_ether_is_read_by_people_and_tiny_amounts_stay_visible() -> None:
    assert ether(3 * ETH // 2) == "1.5 ETH" and ether(0) == "0 ETH" and ether(1000) == "1000 wei"
    assert ether(997_995_194 * 10**9) == "0.997995 ETH"
