"""GTG-Shapley contributions (Liu et al. 2022), deterministic enough for a committee of validators.

The Shapley value of worker i is its marginal gain ``U(S ∪ {i}) − U(S)`` averaged over all orders in
which the workers could join. Following GTG-Shapley, no model is retrained: the model of a coalition S
is *reconstructed* as the FedAvg of its members' submitted states, re-normalised over their samples
(exactly like leave-one-out's ``w^{-j}``; the empty coalition's model is the round's global model and
the full coalition's is the round's aggregate ``w``).

**Utility** ``U(S) = −L(D; w_S)``, the negated validation loss (cross-entropy), not accuracy: it is
the quantity that qualifies updates and scores leave-one-out, so Shapley values are in the same units
(by efficiency they sum to ``L(D; w_global) − L(D; w)``, the round's improvement); and it is smooth,
whereas accuracy moves in steps of 1/|D| and leaves most marginal gains exactly 0 on a validation set
of a few thousand images, which makes a sampled estimate much noisier.

**Determinism.** Every loss is quantised to the 1e-5 grid of :func:`~refiner.units.quantize`
*before* any decision is taken, and everything after that is exact integer/rational arithmetic:
marginals, truncation tests, the convergence test and the running means. Two validators whose
evaluations land in the same quantisation cells (bit-identical on one machine whatever the thread
count, see :mod:`refiner.fl.evaluation`) therefore take the same truncation and stopping decisions and
produce the same values. Permutations come from SHA-256 of the inputs (the global model's digest and
the sorted (model digest, sample count) pairs), never from a global RNG. The workers are put in a
canonical order (by digest and samples) first, so the result does not depend on the input order. The
final values are rounded (half to even, exactly) onto the same 1e-5 grid.

**Algorithm** (defaults in :class:`GtgShapley`):

* *Between-round truncation*: if ``|U(N) − U(∅)|`` (the round's improvement) is below
  ``round_tolerance``, every worker gets 0: there is nothing to share.
* *Exact*: when enumerating all ``2^n − 2`` proper coalitions costs no more evaluations than the
  sampling budget (``max_permutations·(n − 1)``, and fits ``max_evaluations``), the exact Shapley value
  is computed from all coalitions (n ≤ 7 with the defaults): no sampling, no truncation.
* *Guided sampling*: permutation k starts with worker ``k mod n`` (each worker leads once per cycle of
  n permutations), the rest is a seeded Fisher–Yates shuffle.
* *Within-round truncation*: along a permutation, once the prefix coalition's utility is within
  ``within_tolerance·|U(N) − U(∅)|`` of ``U(N)``, the remaining workers' marginals are set to 0
  without evaluating their coalitions.
* *Convergence*: after each batch of permutations, once ``min_permutations`` (default n) are done,
  stop if over the last ``window`` permutations the running mean moved by at most ``convergence``
  relative to its L1 norm.
* *Budget*: at most ``max_permutations`` permutations and ``max_evaluations`` coalition evaluations
  (the global model's included; the full coalition's loss is given), coalition utilities are cached.
  Permutations are processed in batches (one evaluate pass per prefix length for the whole batch);
  a batch is sized so that its worst case fits the remaining budget. If the budget still runs out
  inside a batch, its unfinished permutations are dropped (or, when no permutation finished at all,
  counted as truncated where they stopped).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

from refiner.fl.aggregation import fedavg
from refiner.fl.data import Dataset
from refiner.fl.evaluation import evaluate_many
from refiner.fl.measures.base import ContributionMeasure, StateLike, check_counts
from refiner.fl.models import ModelFn, model_digest
from refiner.units import ONE, quantize

Coalition = frozenset[int]
#: A batched utility oracle: coalitions (of worker positions 0..n-1) → their utilities in ppm (higher
#: is better), one per coalition, in order.
Utility = Callable[[Sequence[Coalition]], list[int]]

SEED_DOMAIN = b"refiner-gtg-shapley-v1\0"
EVAL_CHUNK = 16  # reconstructed models evaluated per evaluate_many pass (bounds memory, not results)
GRID_PPM = 10  # the 1e-5 quantum in ppm


@dataclass(frozen=True)
class ShapleyEstimate:
    """The outcome of one GTG-Shapley run (values in the order of the workers given)."""

    contributions: tuple[float, ...]  # loss units, on the 1e-5 grid (quantize() leaves them unchanged)
    values_ppm: tuple[Fraction, ...]  # the exact estimates before rounding, in ppm
    method: str  # "exact", "sampled", "round-truncated" or "none" (no workers)
    evaluations: int  # coalition models evaluated (the global model included)
    permutations: int  # permutations averaged (sampled) / n! (exact) / 0
    within_truncated: int  # of those, how many were cut short by within-round truncation
    converged: bool  # sampled: the convergence test passed (else a budget ended the run)
    gain_ppm: int  # U(N) − U(∅) = quantised L(global) − quantised L(w)


def guided_permutation(seed: bytes, k: int, n: int) -> list[int]:
    """The k-th permutation of 0..n-1: it starts with ``k mod n``, the rest is Fisher–Yates with
    ``j = sha256(seed ‖ k ‖ i)[:8] mod (i + 1)`` (little-endian u64s; the modulo bias is < n/2^64)."""
    first = k % n
    rest = [i for i in range(n) if i != first]
    for i in range(len(rest) - 1, 0, -1):
        h = hashlib.sha256(seed + struct.pack("<QQ", k, i)).digest()
        j = int.from_bytes(h[:8], "little") % (i + 1)
        rest[i], rest[j] = rest[j], rest[i]
    return [first, *rest]


def to_grid(value_ppm: Fraction) -> int:
    """``value_ppm`` rounded half to even onto the 10-ppm (1e-5) grid, clamped like quantize()."""
    q = round(value_ppm / GRID_PPM) * GRID_PPM
    return max(-quantize(math.inf), min(quantize(math.inf), q))


def _converged(records: Sequence[Sequence[int]], window: int, tolerance: Fraction) -> bool:
    """Did the running mean φ^k move by at most ``tolerance·||φ^K||₁`` (L1) over the last ``window``
    permutations? Exact: with prefix sums S^k = kφ^k, ``||φ^k − φ^K||₁ ≤ t·||φ^K||₁`` is
    ``Σ_i |K·S^k_i − k·S^K_i| ≤ t·k·Σ_i |S^K_i|``."""
    big_k = len(records)
    w = min(window, big_k - 1)
    if w < 1:
        return False
    n = len(records[0])
    prefix = [[0] * n]
    for r in records:
        prefix.append([a + b for a, b in zip(prefix[-1], r, strict=True)])
    last = prefix[big_k]
    norm = sum(abs(x) for x in last)
    for k in range(big_k - w, big_k):
        dist = sum(abs(big_k * a - k * b) for a, b in zip(prefix[k], last, strict=True))
        if dist > tolerance * k * norm:
            return False
    return True


@dataclass(frozen=True)
class GtgShapley(ContributionMeasure):
    """GTG-Shapley over reconstructed FedAvg models; see the module docstring for the algorithm."""

    max_permutations: int = 30
    max_evaluations: int = 400  # covers one full guided cycle for n ≤ 20 even without truncation
    round_tolerance: float = 1e-4  # loss units (10 quanta): below this round improvement all get 0
    within_tolerance: float = 0.01  # fraction of the round's improvement
    convergence: float = 0.05  # relative L1 movement of the running mean
    window: int = 10  # permutations over which the running mean must have settled
    min_permutations: int | None = None  # default: n (one guided cycle), at most max_permutations
    exact: bool = True  # enumerate all coalitions when that is no dearer than sampling

    def __post_init__(self) -> None:
        if self.max_permutations < 1 or self.max_evaluations < 1 or self.window < 1:
            raise ValueError(f"budgets and window must be ≥ 1: {self}")
        if self.min_permutations is not None and self.min_permutations < 1:
            raise ValueError(f"min_permutations must be ≥ 1: {self}")
        for name in ("round_tolerance", "within_tolerance", "convergence"):
            x = getattr(self, name)
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{name} must be finite and ≥ 0, got {x}")
        if self.within_tolerance >= 1:
            raise ValueError(f"within_tolerance must be < 1, got {self.within_tolerance}")

    # ------------------------------------------------------------------ the contribution measure

    def contributions(
        self,
        model_fn: ModelFn,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        full_loss: float,
        *,
        global_state: StateLike,
    ) -> list[float]:
        return list(
            self.estimate(
                model_fn, states, samples, validation, full_loss, global_state=global_state
            ).contributions
        )

    def estimate(
        self,
        model_fn: ModelFn,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        full_loss: float,
        *,
        global_state: StateLike,
    ) -> ShapleyEstimate:
        """:meth:`contributions` with the run's statistics (evaluations, permutations, method)."""
        check_counts(states, samples)
        n = len(states)
        if n == 0:
            return ShapleyEstimate((), (), "none", 0, 0, 0, True, 0)
        digests = [model_digest(s) for s in states]
        order = sorted(range(n), key=lambda i: (digests[i], samples[i], i))
        canon = [states[i] for i in order]
        counts = [int(samples[i]) for i in order]
        h = hashlib.sha256(SEED_DOMAIN + model_digest(global_state) + struct.pack("<Q", n))
        for i in order:
            h.update(digests[i] + struct.pack("<Q", samples[i]))
        seed = h.digest()

        def utility(coalitions: Sequence[Coalition]) -> list[int]:
            out: list[int] = []
            for start in range(0, len(coalitions), EVAL_CHUNK):
                models = []
                for c in coalitions[start : start + EVAL_CHUNK]:
                    members = sorted(c)
                    models.append(
                        dict(global_state)
                        if not members
                        else fedavg([canon[i] for i in members], [counts[i] for i in members])
                    )
                out.extend(-quantize(e.loss) for e in evaluate_many(model_fn, models, validation))
            return out

        est = self.estimate_game(n, utility, seed, known={frozenset(range(n)): -quantize(full_loss)})
        values: list[float] = [0.0] * n
        exact: list[Fraction] = [Fraction(0)] * n
        for pos, i in enumerate(order):
            values[i], exact[i] = est.contributions[pos], est.values_ppm[pos]
        return ShapleyEstimate(
            tuple(values),
            tuple(exact),
            est.method,
            est.evaluations,
            est.permutations,
            est.within_truncated,
            est.converged,
            est.gain_ppm,
        )

    # ------------------------------------------------------------------ the game-theoretic core

    def estimate_game(
        self, n: int, utility: Utility, seed: bytes, known: Mapping[Coalition, int] | None = None
    ) -> ShapleyEstimate:
        """Shapley values of players 0..n-1 for the (quantised, ppm) ``utility``; ``known`` utilities
        are not re-evaluated (nor counted as evaluations)."""
        if n < 1:
            return ShapleyEstimate((), (), "none", 0, 0, 0, True, 0)
        cache: dict[Coalition, int] = dict(known or {})
        evaluations = 0

        def fetch(coalitions: Sequence[Coalition]) -> None:
            nonlocal evaluations
            missing = list(dict.fromkeys(c for c in coalitions if c not in cache))
            if missing:
                got = utility(missing)
                if len(got) != len(missing):
                    raise ValueError(f"utility returned {len(got)} values for {len(missing)} coalitions")
                evaluations += len(missing)
                cache.update(zip(missing, (int(v) for v in got), strict=True))

        empty, full = frozenset[int](), frozenset(range(n))
        fetch([empty, full])
        u0, un = cache[empty], cache[full]
        gain = un - u0

        def result(
            values: Sequence[Fraction], method: str, perms: int, cut: int, conv: bool
        ) -> ShapleyEstimate:
            grid = tuple(to_grid(v) / ONE for v in values)
            return ShapleyEstimate(grid, tuple(values), method, evaluations, perms, cut, conv, gain)

        if abs(gain) < round(self.round_tolerance * ONE):
            return result([Fraction(0)] * n, "round-truncated", 0, 0, True)
        proper = 2**n - 2
        remaining = self.max_evaluations - evaluations
        if n == 1 or (self.exact and proper <= remaining and proper <= self.max_permutations * (n - 1)):
            return result(self._exact(n, fetch, cache), "exact", math.factorial(n), 0, True)
        return self._sampled(n, fetch, cache, seed, u0, un, result, lambda: evaluations)

    @staticmethod
    def _exact(
        n: int, fetch: Callable[[Sequence[Coalition]], None], cache: Mapping[Coalition, int]
    ) -> list[Fraction]:
        subsets = [frozenset(c) for size in range(1, n) for c in combinations(range(n), size)]
        fetch(subsets)
        fact = [math.factorial(k) for k in range(n + 1)]
        values = []
        for i in range(n):
            others = [j for j in range(n) if j != i]
            total = 0
            for size in range(n):
                weight = fact[size] * fact[n - size - 1]
                for c in combinations(others, size):
                    s = frozenset(c)
                    total += weight * (cache[s | {i}] - cache[s])
            values.append(Fraction(total, fact[n]))
        return values

    def _sampled(
        self,
        n: int,
        fetch: Callable[[Sequence[Coalition]], None],
        cache: Mapping[Coalition, int],
        seed: bytes,
        u0: int,
        un: int,
        result: Callable[[Sequence[Fraction], str, int, int, bool], ShapleyEstimate],
        used: Callable[[], int],
    ) -> ShapleyEstimate:
        threshold = Fraction(self.within_tolerance) * abs(un - u0)
        tolerance = Fraction(self.convergence)
        min_perms = min(self.max_permutations, self.min_permutations or n)
        records: list[list[int]] = []
        cut = 0
        started = 0
        converged = False
        while started < self.max_permutations:
            remaining = self.max_evaluations - used()
            if remaining <= 0:
                break
            size = min(n, self.max_permutations - started, max(1, remaining // (n - 1)))
            perms = [guided_permutation(seed, started + b, n) for b in range(size)]
            started += size
            prev = [u0] * size
            marginals = [[0] * n for _ in range(size)]
            truncated = [False] * size
            active = list(range(size))
            out_of_budget = False
            for depth in range(1, n + 1):
                for b in active:
                    if abs(un - prev[b]) < threshold:
                        truncated[b] = True
                active = [b for b in active if not truncated[b]]
                if not active:
                    break
                wanted = [frozenset(perms[b][:depth]) for b in active]
                if len({c for c in wanted if c not in cache}) > self.max_evaluations - used():
                    out_of_budget = True
                    break
                fetch(wanted)
                for b, c in zip(active, wanted, strict=True):
                    v = cache[c]
                    marginals[b][perms[b][depth - 1]] = v - prev[b]
                    prev[b] = v
            unfinished = set(active) if out_of_budget else set()
            keep = [b for b in range(size) if b not in unfinished]
            if not keep and not records:
                keep, truncated = list(range(size)), [True] * size
            records.extend(marginals[b] for b in keep)
            cut += sum(truncated[b] for b in keep)
            if out_of_budget:
                break
            if len(records) >= min_perms and _converged(records, self.window, tolerance):
                converged = True
                break
        if not records:  # only with a budget too small for a single coalition
            return result([Fraction(0)] * n, "sampled", 0, 0, False)
        values = [Fraction(sum(r[i] for r in records), len(records)) for i in range(n)]
        return result(values, "sampled", len(records), cut, converged)

    def __repr__(self) -> str:
        return (
            f"GtgShapley(max_permutations={self.max_permutations}, max_evaluations={self.max_evaluations}, "
            f"round_tolerance={self.round_tolerance}, within_tolerance={self.within_tolerance}, "
            f"convergence={self.convergence}, window={self.window}, "
            f"min_permutations={self.min_permutations}, exact={self.exact})"
        )
