"""Why a worker was rejected, or accepted and paid nothing, in words: one wording for the demo table,
the web UI (through its JSON view) and the agents' logs.

Everything here reads a manifest's per-worker result (``accepted``, ``contribution`` and ``loss`` in
ppm) and the task's ε in ppm, so the reason always matches what the contract pays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from refiner.chain.types import NO_EPSILON
from refiner.units import ONE

#: Why a measure's screen (:mod:`~refiner.fl.measures.trusted_data`) rejects an update that passed ε:
#: the manifest's ``screen`` field.
SCREEN_FLAGS = ("low-trust", "oversized", "stale", "duplicate")


def _screened(screen: str, trust_ppm: int | None) -> str:
    trust = "" if trust_ppm is None else f" (cosine {trust_ppm / ONE:+.3f})"
    if screen == "low-trust":
        return (
            f"rejected: its update does not point the way an update trained on the requester's validation "
            f"data does{trust}"
        )
    if screen == "oversized":
        return (
            "rejected: its update is longer than training on its claimed data could make it (several "
            "times an update trained on the requester's validation data)"
        )
    if screen == "stale":
        return "rejected: its update only repeats the last round's global step (no training of its own)"
    return "rejected: its update nearly duplicates another worker's update in this round"


def verdict_reason(
    *,
    accepted: bool,
    contribution_ppm: int,
    loss_ppm: int | None,
    epsilon_ppm: int,
    screen: str | None = None,
    trust_ppm: int | None = None,
) -> str:
    """One line that says why a worker is (or is not) paid for its update in a round."""
    if accepted:
        if contribution_ppm > 0:
            return f"paid: its contribution is {contribution_ppm / ONE:+.5f}"
        return (
            f"accepted but unpaid: its contribution is {contribution_ppm / ONE:+.5f}, i.e. the aggregate "
            "was as good or better on the validation data without its update"
        )
    if loss_ppm is None:
        return (
            "rejected: its update could not be read or checked (missing, malformed or over the size limits)"
        )
    if loss_ppm > epsilon_ppm >= NO_EPSILON * ONE:
        return "rejected: its validation loss is not a finite number (the task sets no ε)"
    if loss_ppm > epsilon_ppm:
        return (
            f"rejected: its validation loss {loss_ppm / ONE:.4f} is above the task's threshold "
            f"ε = {epsilon_ppm / ONE:.4f}"
        )
    if screen in SCREEN_FLAGS:
        return _screened(screen, trust_ppm)
    return "rejected by the committee's consensus manifest"


def result_reason(result: Mapping[str, Any], epsilon_ppm: int) -> str:
    """:func:`verdict_reason` of one entry of a manifest's ``results``."""
    loss = result.get("loss")
    return verdict_reason(
        accepted=bool(result["accepted"]),
        contribution_ppm=int(result["contribution"]),
        loss_ppm=None if loss is None else int(loss),
        epsilon_ppm=epsilon_ppm,
        screen=result.get("screen"),
        trust_ppm=None if result.get("trust") is None else int(result["trust"]),
    )
