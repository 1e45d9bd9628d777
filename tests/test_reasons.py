"""The words that say why a worker was rejected, or accepted and paid nothing."""

from __future__ import annotations

from refiner.chain.types import NO_EPSILON
from refiner.reasons import result_reason, verdict_reason

EPS = 1_000_000


def test_paid() -> None:
    assert verdict_reason(accepted=True, contribution_ppm=12_340, loss_ppm=80_000, epsilon_ppm=EPS) == (
        "paid: its contribution is +0.01234"
    )


def test_accepted_but_unpaid_says_why() -> None:
    text = verdict_reason(accepted=True, contribution_ppm=-20, loss_ppm=80_000, epsilon_ppm=EPS)
    assert text.startswith("accepted but unpaid: its contribution is -0.00002")
    assert "without its update" in text
    assert "unpaid" in verdict_reason(accepted=True, contribution_ppm=0, loss_ppm=1, epsilon_ppm=EPS)


def test_rejections() -> None:
    assert verdict_reason(accepted=False, contribution_ppm=0, loss_ppm=2_302_590, epsilon_ppm=EPS) == (
        "rejected: its validation loss 2.3026 is above the task's threshold ε = 1.0000"
    )
    unreadable = verdict_reason(accepted=False, contribution_ppm=0, loss_ppm=None, epsilon_ppm=EPS)
    assert "could not be read" in unreadable
    assert "consensus" in verdict_reason(accepted=False, contribution_ppm=0, loss_ppm=10, epsilon_ppm=EPS)


def test_result_reason_reads_a_manifest_entry() -> None:
    entry = {"worker": "0xA1", "accepted": False, "samples": 3, "contribution": 0, "loss": None}
    assert result_reason(entry, EPS).startswith("rejected: its update could not be read")


def test_a_screened_out_update_says_which_screen() -> None:
    def entry(screen: str) -> dict[str, object]:
        return {
            "worker": "0xA1",
            "accepted": False,
            "samples": 3,
            "contribution": 0,
            "loss": 10,
            "trust": -310_000,
            "screen": screen,
        }

    assert result_reason(entry("low-trust"), EPS) == (
        "rejected: its update does not point the way an update trained on the requester's validation "
        "data does (cosine -0.310)"
    )
    assert "repeats the last round's global step" in result_reason(entry("stale"), EPS)
    assert "duplicates another worker's update" in result_reason(entry("duplicate"), EPS)


def test_without_epsilon_only_a_non_finite_loss_is_rejected_for_its_loss() -> None:
    none = round(NO_EPSILON * EPS)
    text = verdict_reason(accepted=False, contribution_ppm=0, loss_ppm=10**15, epsilon_ppm=none)
    assert text == "rejected: its validation loss is not a finite number (the task sets no ε)"
    screened = verdict_reason(
        accepted=False, contribution_ppm=0, loss_ppm=5_000_000, epsilon_ppm=none, screen="low-trust"
    )
    assert screened.startswith("rejected") and "ε" not in screened
