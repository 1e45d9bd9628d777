"""Trusted-data contributions: updates screened against the requester's validation data, paid by data.

Leave-one-out and GTG-Shapley pay by per-round loss gains, which on IID data are noise once the model
has converged (docs/robustness.md) and which an extrapolator of the last global step also earns. This
measure separates the two questions the paper asks (§2.3.6): *is the update honest work on data like
the task's?* (a screen) and *how much data went into it?* (the pay).

**Screen**, per update ``Δ_i = w_i − w_g`` of a worker that passed ε (FLTrust's idea, Cao et al. 2021,
with the validation set as its root dataset):

* ``reference``: the validator trains the round's starting model ``w_g`` on the validation set with the
  task's own local-training settings and a fixed seed (``w_1``), then on for ``reference_epochs`` times
  the task's epochs in all; ``Δ_ref = w_ref − w_g``. The long run is what makes late rounds readable: a
  one-epoch reference is mostly SGD noise once the model has converged, and so is its cosine with an
  honest update (logistic, IID, 5 workers, 3 seeds, rounds 4-10: 82 % of honest cosines above 0 with
  one epoch, 93 % with 5, 98 % with 10, 99 % with 20; small CNN 100 % from 5).
* ``trust_i = cos(Δ_i, Δ_ref)``; an update whose trust is not positive on the grid, or below
  ``min_relative_trust`` (10 %) of the trust an honest update can expect this round, is rejected
  (``low-trust``): a shuffled-label, permuted, free-riding or sign-flipped update does not point the
  way the validation data teaches. The expectation is the validators' own: the cosine of a task-length
  update trained on one half of the validation set with the long run on the other half. It follows the
  round (logistic, IID: ~0.68 in round 1, ~0.1 from round 2), so the bound stops the round-1
  shuffled-label update whose cosine is barely positive (−0.03…+0.05 in the demo's setting, against
  +0.7 for honest ones) while rejecting few late honest updates (~0.005-0.15). 10 % against 5 %
  (docs/incentives.md, 3 seeds): shuffled labels earn 0 / 0 / 0 % instead of 0 / 1.1 / 4.1 % (IID,
  20 / 40 / 80 % attackers), but the worst honest worker at Dirichlet 0.5 is paid in 70 % of rounds
  instead of 80 % (ρ 0.73 instead of 0.97): non-IID honest cosines fall further below the expectation,
  which the validation data (IID) sets. In the task's first round (no previous model given) the share
  is ``first_relative_trust`` (25 %): from an untrained model label-free training shares a calibration
  direction with honest training (small CNN, round 1: shuffled labels +0.04…+0.09, honest +0.40…+0.62).
  A validator that cannot open a later round's previous model applies that stricter share too (as it
  skips the stale test): on a borderline update it may then vote apart from the majority.
* ``oversized``: ``‖Δ_i‖ > max_norm_ratio · ‖w_1 − w_g‖ · max(1, n_i / |D|)`` (SGD on ``n_i``
  samples takes ``n_i / |D|`` times the reference's steps): a boosted update, or random weights.
* ``stale``: with the previous round's starting model ``w_p`` given, ``s = w_g − w_p`` is the last
  global step; an update whose part orthogonal to ``s`` is below ``min_novelty`` of its norm repeats
  that step (an extrapolator ``w_g + a·s`` has none) and is rejected.
* ``duplicate``: an update with ``cos(Δ_i, Δ_j) ≥ copy_similarity`` to an earlier one that is not a
  copy itself (updates come in submission order, the order on chain) is rejected; the earliest is kept
  if it passes the other tests. Models travel
  encrypted to the committee only, so a copy needs the original's plaintext: either its owner's help
  (one party claiming twice: it is paid once) or a leak, and then the copy comes after the original,
  whose owner keeps its pay (honest pairs measured ≤ 0.73, a 30 %-noise copy 0.95).

**Pay**: each update that passes is paid its share of the capped claimed samples of the updates that
passed (``contribution_i = n_i / Σ n``, on the 1e-5 grid). Claims are self-reported: the cap (2× the
round's median claim, :func:`refiner.fl.round_evaluation.capped_samples`) bounds what an inflator can
take; docs/incentives.md measures it.

**Cost** per round and validator: N + 2 evaluations (as every measure: each update, the aggregate and
the starting model; more only when the aggregate check falls back) and 15.5× the task's epochs of
training on the validation set (10 on all of it, 10 on one half, 1 on the other), whatever N is.

**Determinism**: cosines and norms are float64 sums in numpy's pairwise order over the flattened
parameters (sorted names), compared on the 1e-5 grid; everything after is exact integer arithmetic.
The reference training is float32 SGD on a fixed path: bit for bit the same at one thread count, while
across thread counts ten epochs drift in the cosine's 4th decimal (small CNN: 0.74013 vs 0.74021). Only
the side of each bound is voted on (the manifest's verdicts); the trust values are reported in the
details, not voted, so honest validators disagree only where a cosine is within that drift of a bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from refiner.fl.aggregation import _flat64
from refiner.fl.data import Dataset, subset
from refiner.fl.measures.base import ContributionMeasure, Screening, StateLike, check_counts
from refiner.fl.models import ModelFn
from refiner.fl.training import TrainingConfig, train_local

#: The reference training's seed: fixed, so that every validator trains the same reference.
REFERENCE_SEED = 0x5EED


def _delta(state: StateLike, base: StateLike) -> npt.NDArray[np.float64]:
    return _flat64(state) - _flat64(base)


def _dot(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    return float(np.add.reduce(a * b))


def _norm(a: npt.NDArray[np.float64]) -> float:
    return math.sqrt(_dot(a, a))


def _cos(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], na: float, nb: float) -> float:
    return _dot(a, b) / (na * nb) if na > 0 and nb > 0 else 0.0


def _grid(x: float) -> int:
    """``x`` on the 1e-5 grid as an integer count of quanta (NaN counts as −∞: it never passes)."""
    return round(x * 100_000) if math.isfinite(x) else -(10**9)


@dataclass(frozen=True)
class TrustedData(ContributionMeasure):
    """The trusted-data screen and pay by capped data share (see the module docstring)."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    reference_epochs: int = 10  # the direction's training, in multiples of the task's local epochs
    min_trust: float = 0.00001  # one quantum: trust must be positive on the grid...
    min_relative_trust: float = 0.1  # ...and at least this share of the trust an honest update expects
    first_relative_trust: float = 0.25  # the same in the task's first round (no previous model)
    max_norm_ratio: float = 3.0
    min_novelty: float = 0.05
    copy_similarity: float = 0.9
    uses_previous_state = True

    def __post_init__(self) -> None:
        if self.reference_epochs < 1:
            raise ValueError(f"reference_epochs must be at least 1, not {self.reference_epochs}")

    def screen(
        self,
        model_fn: ModelFn,
        global_state: StateLike,
        states: Sequence[StateLike],
        samples: Sequence[int],
        validation: Dataset,
        *,
        previous_state: StateLike | None = None,
    ) -> list[Screening]:
        if not states:
            return []
        check_counts(states, samples)
        cfg = replace(self.training, mu=0.0, seed=REFERENCE_SEED)
        short_state = train_local(model_fn, global_state, validation, cfg)
        short = _delta(short_state, global_state)
        ref_norm = _norm(short)
        direction = self._long_run(model_fn, global_state, short_state, validation, cfg)
        deltas = [_delta(s, global_state) for s in states]
        norms = [_norm(d) for d in deltas]
        dir_norm = _norm(direction)
        # a zero update (a free rider) has no direction: trust 0, below the bound
        trust = [_cos(d, direction, n, dir_norm) for d, n in zip(deltas, norms, strict=True)]
        # from an untrained model label-free training shares a "calibration" direction with honest
        # training (a round-1 shuffled-label update: cosine up to +0.09), honest cosines are high
        relative = self.first_relative_trust if previous_state is None else self.min_relative_trust
        bound = max(
            _grid(self.min_trust),
            _grid(relative * self._expected_trust(model_fn, global_state, validation, cfg)),
        )
        flags: list[str | None] = ["low-trust" if _grid(t) < bound else None for t in trust]
        for i, (n, count) in enumerate(zip(norms, samples, strict=True)):
            # SGD on `count` samples takes max(1, count / |D|) times the reference's steps
            allowed = self.max_norm_ratio * ref_norm * max(len(validation), count)
            if flags[i] is None and _grid(n * len(validation)) > _grid(allowed):
                flags[i] = "oversized"
        if previous_state is not None:
            step = _delta(global_state, previous_state)
            step_sq = _dot(step, step)
            if step_sq > 0:
                for i, (d, n) in enumerate(zip(deltas, norms, strict=True)):
                    rest = d - (_dot(d, step) / step_sq) * step
                    novelty = _norm(rest) / n if n > 0 else 0.0
                    if flags[i] is None and _grid(novelty) < _grid(self.min_novelty):
                        flags[i] = "stale"
        # in submission order, each against the earlier originals, screened out or not (a copy of a
        # rejected update is rejected too, and its copies are not compared with each other)
        originals: list[int] = []
        for j, flag in enumerate(flags):
            if flag is None:
                copied = (_grid(_cos(deltas[i], deltas[j], norms[i], norms[j])) for i in originals)
                if any(c >= _grid(self.copy_similarity) for c in copied):
                    flags[j] = "duplicate"
                    continue
            originals.append(j)
        return [
            Screening(trust=t if math.isfinite(t) else 0.0, flag=f) for t, f in zip(trust, flags, strict=True)
        ]

    def _long_run(
        self, model_fn: ModelFn, global_state: StateLike, first: StateLike, data: Dataset, cfg: TrainingConfig
    ) -> npt.NDArray[np.float64]:
        """``first`` (the task's epochs on ``data``) trained on to ``reference_epochs`` times them, as a
        delta from ``global_state``."""
        more = replace(cfg, epochs=cfg.epochs * (self.reference_epochs - 1), seed=REFERENCE_SEED + 1)
        return _delta(train_local(model_fn, first, data, more), global_state)

    def _expected_trust(
        self, model_fn: ModelFn, global_state: StateLike, validation: Dataset, cfg: TrainingConfig
    ) -> float:
        """The trust an honest update gets this round, as far as the validation data can tell: the cosine
        of one half's task-length update with the other half's long run (0 for a single sample)."""
        half = len(validation) // 2
        if half == 0:
            return 0.0
        a, b = subset(validation, range(half)), subset(validation, range(half, len(validation)))
        long_a = self._long_run(model_fn, global_state, train_local(model_fn, global_state, a, cfg), a, cfg)
        short_b = _delta(
            train_local(model_fn, global_state, b, replace(cfg, seed=REFERENCE_SEED + 2)), global_state
        )
        return _cos(short_b, long_a, _norm(short_b), _norm(long_a))

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
        check_counts(states, samples)
        total = sum(samples)
        # exact: the share in quanta, rounded half to even by integer arithmetic, then scaled once
        return (
            [_round_ratio(n * 100_000, total) / 100_000 for n in samples] if total else [0.0] * len(samples)
        )


def _round_ratio(num: int, den: int) -> int:
    q, r = divmod(num, den)
    return q + (1 if 2 * r > den or (2 * r == den and q % 2) else 0)
