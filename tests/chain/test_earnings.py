"""The `earned` field of the results leaves: what each worker has earned in the task through a round."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from refiner.chain import WorkerResult
from refiner.chain.earnings import carried, round_pay, with_earnings

A, B, C = ("0x" + c * 40 for c in "abc")


def test_a_round_pays_the_paid_workers_their_share_rounded_down() -> None:
    results = [WorkerResult(A, True, 10, 1), WorkerResult(B, True, 10, 2), WorkerResult(C, False, 10, 5)]
    assert round_pay(results, 100) == {A: 33, B: 66}  # 1 wei of dust; the rejected worker earns nothing
    assert round_pay([WorkerResult(A, True, 10, -3)], 100) == {}  # no positive contribution: nobody


def test_earnings_carry_over_and_workers_absent_from_a_round_keep_theirs() -> None:
    round_1 = with_earnings([WorkerResult(A, True, 10, 1), WorkerResult(B, True, 10, 3)], 100, {})
    assert [r.earned for r in round_1] == [25, 75]
    after_1 = carried({}, round_1)
    # round 2: A rejected (keeps its 25), B absent (keeps its 75), C new
    round_2 = with_earnings(
        [WorkerResult(A, False, 10, 0), WorkerResult(C.upper(), True, 10, 4)], 100, after_1
    )
    assert [r.earned for r in round_2] == [25, 100]
    assert carried(after_1, round_2) == {A: 25, B: 75, C: 100}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.integers(-5, 50)), max_size=5),
        min_size=1,
        max_size=5,
    ),
    st.integers(0, 10**20),
)
def test_earnings_are_the_sum_of_the_rounds_shares_and_never_exceed_the_rewards(
    rounds: list[list[tuple[int, bool, int]]], reward: int
) -> None:
    workers = ["0x" + f"{i:040x}" for i in range(5)]
    earned: dict[str, int] = {}
    totals: dict[str, int] = {}
    for played in rounds:
        results = list({w: WorkerResult(workers[w], a, 1, c) for w, a, c in played}.values())
        with_shares = with_earnings(results, reward, earned)
        for r, pay in zip(with_shares, results, strict=True):
            totals[r.worker] = totals.get(r.worker, 0) + round_pay(results, reward).get(pay.worker, 0)
            assert r.earned == totals[r.worker]
        earned = carried(earned, with_shares)
    assert sum(earned.values()) <= reward * len(rounds)
