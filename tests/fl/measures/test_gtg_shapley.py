from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import pytest
import torch

from refiner.fl.aggregation import fedavg
from refiner.fl.data import Dataset, shuffle_labels, synthetic_dataset
from refiner.fl.evaluation import evaluate
from refiner.fl.measures import LeaveOneOut, measure_for
from refiner.fl.measures.gtg_shapley import (
    Coalition,
    GtgShapley,
    ShapleyEstimate,
    guided_permutation,
    to_grid,
)
from refiner.fl.models import State, initial_state, logistic, small_cnn
from refiner.fl.plain import run_fedavg
from refiner.fl.round_evaluation import evaluate_round
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.units import quantize
from refiner.wire.spec import DescriptionError, TaskDescription
from tests.fl.tiny import LABELS, VALIDATION, Bias2, loss, state

SEED = b"\x01" * 32


class Game:
    """A utility oracle for ``estimate_game`` that records every coalition it is asked about."""

    def __init__(self, utility: Mapping[Coalition, int] | Callable[[Coalition], int]) -> None:
        self.utility = utility.__getitem__ if isinstance(utility, Mapping) else utility
        self.asked: list[Coalition] = []

    def __call__(self, coalitions: Sequence[Coalition]) -> list[int]:
        self.asked.extend(coalitions)
        return [self.utility(c) for c in coalitions]


def brute_force(n: int, u: dict[Coalition, int]) -> list[Fraction]:
    """The Shapley value by definition: marginal gains averaged over all n! orders."""
    totals = [0] * n
    for order in itertools.permutations(range(n)):
        members: set[int] = set()
        for i in order:
            before = u[frozenset(members)]
            members.add(i)
            totals[i] += u[frozenset(members)] - before
    return [Fraction(t, math.factorial(n)) for t in totals]


def all_coalitions(n: int) -> list[Coalition]:
    return [frozenset(c) for k in range(n + 1) for c in itertools.combinations(range(n), k)]


# ----------------------------------------------------------------------------- the core


def test_guided_permutations_cycle_the_first_worker_and_are_seeded() -> None:
    perms = [guided_permutation(SEED, k, 5) for k in range(10)]
    assert [p[0] for p in perms] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]
    assert all(sorted(p) == list(range(5)) for p in perms)
    assert perms == [guided_permutation(SEED, k, 5) for k in range(10)]
    assert perms != [guided_permutation(b"\x02" * 32, k, 5) for k in range(10)]
    assert guided_permutation(SEED, 7, 1) == [0]


def test_to_grid_rounds_half_to_even_on_the_quantum() -> None:
    assert [to_grid(Fraction(x)) for x in (14, 15, 25, -15, Fraction(49, 5))] == [10, 20, 20, -20, 10]
    assert to_grid(Fraction(10**20)) == quantize(math.inf)


def test_exact_shapley_on_three_workers_equals_brute_force() -> None:
    u = {
        frozenset(c): v
        for c, v in zip(all_coalitions(3), [0, 1000, 500, 0, 2000, 1200, 600, 3000], strict=True)
    }
    game = Game(u)
    est = GtgShapley().estimate_game(3, game, SEED)
    assert est.method == "exact" and est.permutations == 6 and est.evaluations == 8
    assert list(est.values_ppm) == brute_force(3, u)
    assert sum(est.values_ppm) == u[frozenset({0, 1, 2})] - u[frozenset()]  # efficiency
    assert list(est.contributions) == [to_grid(v) / 1_000_000 for v in brute_force(3, u)]
    assert len(game.asked) == len(set(game.asked)) == 8
    # the full coalition's utility can be given (it is the round's aggregate): not re-evaluated
    known = GtgShapley().estimate_game(3, Game(u), SEED, known={frozenset({0, 1, 2}): 3000})
    assert known.values_ppm == est.values_ppm and known.evaluations == 7


def test_exact_shapley_of_real_models_by_hand() -> None:
    # the tiny two-logit model of test_contribution: every coalition model and its loss by hand
    w = [state(1.0, 0.0), state(0.0, 1.0), state(0.0, 0.0)]
    n = [1, 1, 2]
    g = state(-0.5, 0.5)

    def model_loss(c: Coalition) -> float:
        if not c:
            return loss(-0.5, 0.5, LABELS)
        total = sum(n[i] for i in c)
        b0 = sum(n[i] * float(w[i]["b"][0]) for i in c) / total
        b1 = sum(n[i] * float(w[i]["b"][1]) for i in c) / total
        return loss(b0, b1, LABELS)

    u = {}
    for c in all_coalitions(3):
        members = sorted(c)
        model = fedavg([w[i] for i in members], [n[i] for i in members]) if members else g
        got = evaluate(Bias2, model, VALIDATION).loss
        assert got == pytest.approx(model_loss(c), abs=1e-6)
        u[c] = -quantize(got)
    full = evaluate(Bias2, fedavg(w, n), VALIDATION).loss
    est = GtgShapley().estimate(Bias2, w, n, VALIDATION, full, global_state=g)
    assert est.method == "exact" and est.evaluations == 7  # ∅ (the global model) + 6 proper coalitions
    assert list(est.values_ppm) == brute_force(3, u)
    assert [quantize(c) for c in est.contributions] == [to_grid(v) for v in brute_force(3, u)]
    # through a validator's round: the measure's values are what goes on chain
    updates = [("0xA1", w[0], 1), ("0xA2", w[1], 1), ("0xA3", w[2], 2)]
    r = evaluate_round(Bias2, g, updates, VALIDATION, 2.0, GtgShapley())
    assert [x.contribution_ppm for x in r.workers] == [to_grid(v) for v in brute_force(3, u)]


def test_sampled_estimate_is_close_to_the_exact_value() -> None:
    # eight players: additive values plus a synergy of 0 and 1 that Shapley splits equally
    a = [400, 300, 250, 200, 150, 100, 50, 0]
    u = {c: 10 * (sum(a[i] for i in c) + (500 if {0, 1} <= c else 0)) for c in all_coalitions(8)}
    exact = GtgShapley(max_permutations=200).estimate_game(8, Game(u), SEED)
    assert exact.method == "exact" and exact.evaluations == 2**8
    assert list(exact.values_ppm) == [10 * (a[0] + 250), 10 * (a[1] + 250), *(10 * x for x in a[2:])]
    game = Game(u)
    sampled = GtgShapley(within_tolerance=0).estimate_game(8, game, SEED)
    assert sampled.method == "sampled" and sampled.permutations <= 30
    assert sampled.evaluations <= min(400, sampled.permutations * 7 + 2)
    assert len(game.asked) == len(set(game.asked)) == sampled.evaluations  # every coalition once
    errors = [abs(s - e) for s, e in zip(sampled.values_ppm, exact.values_ppm, strict=True)]
    assert max(errors) <= 0.25 * 5000, errors  # only the synergy is sampled
    assert sum(sampled.values_ppm) == u[frozenset(range(8))]  # no truncation: every order sums up


def test_truncations_and_budgets() -> None:
    n = 20
    weights = [100 * (i + 1) for i in range(n)]

    def utility(c: Coalition) -> int:  # concave: the last members add little (truncation can cut)
        return 10 * round(100_000 * (1 - math.exp(-sum(weights[i] for i in c) / 5000)))

    game = Game(utility)
    est = GtgShapley().estimate_game(n, game, SEED)
    assert est.method == "sampled" and est.evaluations <= 400 and est.permutations <= 30
    assert est.within_truncated > 0 and len(game.asked) == len(set(game.asked))
    assert all(v > 0 for v in est.values_ppm)
    assert est.values_ppm[-1] > est.values_ppm[0]  # the heavier player is worth more
    tight = GtgShapley(max_evaluations=50, within_tolerance=0).estimate_game(n, Game(utility), SEED)
    assert tight.evaluations <= 50 and tight.permutations >= 1 and not tight.converged
    few = GtgShapley(max_permutations=3, within_tolerance=0).estimate_game(n, Game(utility), SEED)
    assert few.permutations == 3 and few.evaluations <= 3 * (n - 1) + 2
    # between-round truncation: the round barely moved the model, nobody gets anything
    flat = Game(lambda c: 50 if len(c) == n else 0)
    none = GtgShapley().estimate_game(n, flat, SEED)
    assert none.method == "round-truncated" and none.values_ppm == (0,) * n and none.evaluations == 2


# ----------------------------------------------------------------------------- real models


def _only(ds: Dataset, low: int, high: int) -> Dataset:
    keep = (ds.y >= low) & (ds.y < high)
    return Dataset(ds.x[keep].contiguous(), ds.y[keep].contiguous())


@pytest.fixture(scope="module")
def logistic_round() -> tuple[State, list[State], list[int], Dataset]:
    """Worker A knows classes 0-4, workers B and C classes 5-9 (one epoch of a logistic model)."""
    g = initial_state(logistic, 0)
    cfg = TrainingConfig(lr=0.05)
    shards = [
        _only(synthetic_dataset(600, seed=1, noise=1.0), 0, 5),
        _only(synthetic_dataset(600, seed=2, noise=1.0), 5, 10),
        _only(synthetic_dataset(600, seed=3, noise=1.0), 5, 10),
    ]
    states = [train_local(logistic, g, d, cfg) for d in shards]
    return g, states, [len(d) for d in shards], synthetic_dataset(300, seed=50, noise=1.0)


def _scores(
    measure: GtgShapley | LeaveOneOut, g: State, states: list[State], n: list[int], val: Dataset
) -> list[int]:
    full = evaluate(logistic, fedavg(states, n), val).loss
    return [quantize(c) for c in measure.contributions(logistic, states, n, val, full, global_state=g)]


def test_a_duplicated_worker_shares_its_value_under_gtg_but_gets_little_under_loo(
    logistic_round: tuple[State, list[State], list[int], Dataset],
) -> None:
    g, (a, b, c), (na, nb, nc), val = logistic_round
    alone = _scores(GtgShapley(), g, [a, b, c], [na, nb, nc], val)
    loo_alone = _scores(LeaveOneOut(), g, [a, b, c], [na, nb, nc], val)
    dup_states, dup_n = [a, a, b, c], [na, na, nb, nc]
    exact = _scores(GtgShapley(), g, dup_states, dup_n, val)
    sampled = _scores(GtgShapley(exact=False), g, dup_states, dup_n, val)
    loo = _scores(LeaveOneOut(), g, dup_states, dup_n, val)
    assert exact[0] == exact[1] > 0  # symmetric players, exact values: identical
    # sampled: the pair together gets what the exact values give it; how it is split between two identical
    # players is Monte-Carlo noise that depends on the trained bits (measured 550k/746k vs 654k each exact
    # on an AMD EPYC; the first copy in a permutation takes the marginal gain, the second little)
    pair, exact_pair = sampled[0] + sampled[1], exact[0] + exact[1]
    assert abs(pair - exact_pair) < 0.05 * exact_pair and min(sampled[:2]) > 0.25 * exact_pair
    assert exact[0] > 0.5 * alone[0] and exact[0] > exact[2] and exact[0] > exact[3]  # still the best
    assert loo[0] == loo[1] < 0.3 * exact[0]  # LOO: each copy makes the other almost redundant...
    assert loo[0] < 0.25 * loo_alone[0]  # ...and most of A's leave-one-out credit is gone


def test_a_free_rider_gets_nothing(logistic_round: tuple[State, list[State], list[int], Dataset]) -> None:
    g, states, n, val = logistic_round
    for measure in (GtgShapley(), GtgShapley(exact=False)):
        scores = _scores(measure, g, [*states, free_ride(g)], [*n, 30], val)
        honest, rider = scores[:3], scores[3]
        # joining first it changes nothing; later it pulls the aggregate back towards the global model
        assert rider <= 0 and abs(rider) < 0.1 * min(honest), scores


def _cnn_round() -> tuple[State, list[State], list[int], Dataset]:
    g = initial_state(small_cnn, 0)
    gen = torch.Generator().manual_seed(4)
    states = []
    for i in range(6):  # six perturbed models: losses all differ, no training needed
        step = 0.02 * (1 + i % 3)
        states.append({k: v + step * torch.randn(v.shape, generator=gen) for k, v in g.items()})
    return g, states, [100, 200, 300, 100, 250, 50], synthetic_dataset(64, seed=9)


def _gtg(threads: int, order: list[int]) -> ShapleyEstimate:
    g, states, n, val = _cnn_round()
    states, n = [states[i] for i in order], [n[i] for i in order]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        full = evaluate(small_cnn, fedavg(states, n), val).loss
        m = GtgShapley(exact=False, max_permutations=8, max_evaluations=24, round_tolerance=0)
        return m.estimate(small_cnn, states, n, val, full, global_state=g)
    finally:
        torch.set_num_threads(before)


def test_gtg_is_deterministic_across_threads_and_input_orders() -> None:
    one = _gtg(1, list(range(6)))
    assert one.method == "sampled" and one.evaluations <= 24 and one.permutations >= 4
    assert _gtg(2, list(range(6))) == one
    order = [3, 0, 5, 1, 4, 2]
    shuffled = _gtg(1, order)
    assert [shuffled.contributions[order.index(i)] for i in range(6)] == list(one.contributions)
    assert all(quantize(c) == round(c * 1_000_000) for c in one.contributions)  # already on the grid


# ----------------------------------------------------------------------------- task description


def test_the_task_description_names_the_measure() -> None:
    old = TaskDescription("ab", contribution="leave-one-out")
    assert "contribution" not in json.loads(old.to_json())
    body = json.loads(old.to_json())
    assert TaskDescription.from_json(json.dumps(body)) == old  # descriptions without the field
    assert isinstance(measure_for(old), LeaveOneOut)
    new = TaskDescription("ab", contribution="gtg-shapley")
    assert json.loads(new.to_json())["contribution"] == "gtg-shapley"
    assert TaskDescription.from_json(new.to_json()) == new
    assert measure_for(new) == GtgShapley() and isinstance(measure_for("leave-one-out"), LeaveOneOut)
    with pytest.raises(DescriptionError, match="contribution"):
        TaskDescription.from_json(json.dumps({**body, "contribution": "banzhaf"}))
    with pytest.raises(ValueError, match="unknown contribution"):
        measure_for("banzhaf")


def test_measure_edge_cases() -> None:
    g = state(0.0, 0.0)
    one = GtgShapley().contributions(
        Bias2, [state(1, 0)], [5], VALIDATION, loss(1, 0, LABELS), global_state=g
    )
    assert [quantize(x) for x in one] == [quantize(loss(0, 0, LABELS) - loss(1, 0, LABELS))]
    assert GtgShapley().contributions(Bias2, [], [], VALIDATION, 0.7, global_state=g) == []
    with pytest.raises(ValueError):
        GtgShapley().contributions(Bias2, [g], [1, 2], VALIDATION, 0.7, global_state=g)
    for bad in ({"max_permutations": 0}, {"within_tolerance": 1.0}, {"convergence": math.nan}):
        with pytest.raises(ValueError):
            GtgShapley(**bad)


def test_the_plain_loop_scores_with_gtg_shapley() -> None:
    shards = [synthetic_dataset(n, seed=s, noise=1.0) for s, n in enumerate([100, 150, 200])]
    shards.append(shuffle_labels(synthetic_dataset(150, seed=9, noise=1.0), seed=0))
    validation, test = synthetic_dataset(200, seed=20, noise=1.0), synthetic_dataset(200, seed=21, noise=1.0)
    cfg, init = TrainingConfig(lr=0.05), initial_state(logistic, 1)
    [loo] = run_fedavg(logistic, shards, validation, test, 1, cfg, 1.0, init, contributions=True)
    [gtg] = run_fedavg(
        logistic, shards, validation, test, 1, cfg, 1.0, init, contributions=True, measure=GtgShapley()
    )
    assert (gtg.test_loss, gtg.accepted) == (loo.test_loss, loo.accepted) == (gtg.test_loss, 3)
    assert gtg.contributions_ppm[3] == 0 and all(c > 0 for c in gtg.contributions_ppm[:3])
    assert gtg.contributions_ppm != loo.contributions_ppm
