"""Worker attacks against a whole task with honest workers present: the real embedded EVM, a directory
store and real encryption; logistic model, 300 MNIST images per worker, 500 validation images, three
validators (all seated), ε = 1.0, lr 0.05, one local epoch. The numbers quoted are as measured on this
machine; training is seeded, so they are reproducible up to float round-off.

Outcomes: an update the committee cannot open or whose validation loss exceeds ε is rejected and unpaid;
an attacker whose update passes ε is aggregated but, with a non-positive leave-one-out contribution, is
not paid. What the committee cannot stop is written as `test_limit_*`: such an accepted update still
moves the round's model, and a claimed sample count is never checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from refiner.adversary.transforms import (
    AttackParameters,
    flip_labels,
    random_weights,
    scale_update,
    sign_flip,
)
from refiner.chain import Chain, Durations, TaskConfig
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist, subset
from refiner.fl.evaluation import evaluate
from refiner.fl.models import State, clone_state
from refiner.fl.round_evaluation import SAMPLE_CAP, RoundEvaluation, evaluate_round
from refiner.roles import ValidatorBehaviour, Worker, WorkerBehaviour
from refiner.simulation import RoundReport, Simulation
from refiner.storage import DirectoryStore
from refiner.units import ETH
from refiner.wire.reads import consensus_details
from refiner.wire.spec import Contribution

WB = WorkerBehaviour
H = WB.HONEST
EPSILON = 1.0
SHARD = 300


@dataclass(frozen=True)
class Mnist:
    validation: Dataset
    shards: list[Dataset]
    test: Dataset
    sevens: Dataset  # every 7 of the official test split


@pytest.fixture(scope="module")
def mnist() -> Mnist:
    train, test = load_mnist()
    validation, shards = split_mnist(train, [SHARD] * 8, validation_size=500, seed=1)
    sevens = subset(test, (test.y == 7).nonzero().flatten())
    return Mnist(validation, shards, subset(test, 1000), sevens)


def deploy(
    shards: list[Dataset],
    behaviours: list[WB],
    store: Path,
    label: str,
    rounds: int,
    contribution: Contribution = "leave-one-out",
) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=rounds,
        max_workers=len(behaviours),
        committee_size=3,
        epsilon=EPSILON,
        durations=Durations(
            recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000
        ),
    )
    return Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        shards,
        behaviours,
        [ValidatorBehaviour.HONEST] * 3,
        config=config,
        model="logistic",
        lr=0.05,
        contribution=contribution,
        stake_unit=ETH,  # 1 unit each and τ = 3 ≥ W: every validator is seated
        label=label,
    )


@dataclass
class Played:
    sim: Simulation
    reports: list[RoundReport]
    starts: list[State]  # the global model each round started from
    losses: list[dict[str, int | None]]  # per round: worker → validation loss in ppm (None: unreadable)

    def worker(self, i: int) -> str:
        return self.sim.workers[i].address


def play(sim: Simulation, data: Mnist, rounds: int) -> Played:
    played = Played(sim, [], [], [])
    for _ in range(rounds):
        played.starts.append(clone_state(sim.global_state))
        report = sim.run_round(data.validation, data.test)
        assert report.consensus
        _, details = consensus_details(sim.store, sim.task, report.round)
        played.losses.append({r["worker"]: r["loss"] for r in details.results})
        played.reports.append(report)
    return played


def assert_only_honest_paid(report: RoundReport, honest: list[str], attacker: str) -> None:
    """The attacker earns nothing; the honest workers share the whole worker reward (less rounding
    dust) in proportion to their positive contributions."""
    assert report.worker_rewards_wei[attacker] == 0
    positive = {w: c for w, c in report.contributions.items() if c > 0 and w in report.accepted}
    assert attacker not in positive
    total = sum(positive.values())
    for w in honest:
        assert report.worker_rewards_wei[w] == (ETH * positive[w] // total if w in positive else 0)
    assert ETH - len(positive) <= sum(report.worker_rewards_wei[w] for w in honest) <= ETH


def without(played: Played, round_: int, data: Mnist, honest: list[Worker]) -> RoundEvaluation:
    """The round as the committee would have evaluated it had the attacker not taken part (the honest
    workers' training is seeded, so re-training them reproduces their submitted updates)."""
    sim = played.sim
    assert sim.task.current_round() == round_
    updates = [(w.address, w.train(sim.task), len(w.data)) for w in honest]
    return evaluate_round(sim.model_fn, played.starts[round_ - 1], updates, data.validation, EPSILON)


# ---------------------------------------------------------------- updates the committee rejects


@pytest.fixture(scope="module")
def gallery(mnist: Mnist, tmp_path_factory: pytest.TempPathFactory) -> Played:
    """Three honest workers and five attackers whose updates are all rejected (rejected updates do not
    enter the aggregate, so they cannot disturb one another's outcome), two rounds."""
    shards = list(mnist.shards)
    shards[3] = shuffle_labels(shards[3], seed=3)
    behaviours = [
        H,
        H,
        H,
        WB.SHUFFLED_LABELS,
        WB.RANDOM_WEIGHTS,
        WB.SIGN_FLIP,
        WB.SCALED_UPDATE,
        WB.REPLAY_OTHERS_HANDLES,  # last: in round 1 it copies a submission already made
    ]
    sim = deploy(shards, behaviours, tmp_path_factory.mktemp("gallery"), "gallery", rounds=2)
    return play(sim, mnist, rounds=2)


#: (behaviour, its worker index in the gallery, a lower bound of its validation loss in both rounds)
REJECTED = [
    (WB.SHUFFLED_LABELS, 3, 2.0),  # measured 2.70 and 2.12
    (WB.RANDOM_WEIGHTS, 4, 20.0),  # measured 55.0 and 39.8 (σ = 1)
    (WB.SIGN_FLIP, 5, 1.2),  # measured 6.65 and 1.37: reversing a good update is worse than no update
    (WB.SCALED_UPDATE, 6, 1.5),  # measured 2.46 and 2.13 (k = 10): it overshoots
]


@pytest.mark.parametrize(("behaviour", "index", "min_loss"), REJECTED, ids=[b.value for b, _, _ in REJECTED])
def test_a_poisoned_update_is_rejected_every_round_and_never_paid(
    gallery: Played, behaviour: WB, index: int, min_loss: float
) -> None:
    attacker = gallery.worker(index)
    assert gallery.sim.workers[index].behaviour is behaviour
    honest = [gallery.worker(i) for i in range(3)]
    for report, losses in zip(gallery.reports, gallery.losses, strict=True):
        assert attacker in report.rejected
        assert report.contributions[attacker] == 0
        loss = losses[attacker]
        assert loss is not None and loss > EPSILON * 1e6 and loss >= min_loss * 1e6, loss
        assert_only_honest_paid(report, honest, attacker)


def test_replaying_another_workers_handles_cannot_be_opened_and_is_rejected(gallery: Played) -> None:
    """A worker cannot read another's update, but the update's handles are public in the chain's events.
    Re-submitted as its own, in the same round (round 1) or a later one (round 2), they open for nobody:
    the ciphertext and its key envelope are bound to the original sender and round. The committee
    rejects the submission without a loss (it cannot be evaluated) and pays nothing for it."""
    replayer = gallery.worker(7)
    victim = gallery.worker(0)
    task = gallery.sim.task
    r1 = {e["worker"]: e for e in task.round_events("TrainingResultsSubmitted", 1)}
    r2 = {e["worker"]: e for e in task.round_events("TrainingResultsSubmitted", 2)}
    assert r1[replayer]["modelHandle"] == r1[victim]["modelHandle"]  # round 1: copied in the same round
    assert r2[replayer]["modelHandle"] == r1[victim]["modelHandle"]  # round 2: replays round 1's
    assert r2[replayer]["keysHandle"] == r1[victim]["keysHandle"]
    for report, losses in zip(gallery.reports, gallery.losses, strict=True):
        assert replayer in report.rejected and losses[replayer] is None
        assert victim in report.accepted  # the victim is unaffected
        assert_only_honest_paid(report, [gallery.worker(i) for i in range(3)], replayer)


def test_five_rejected_attackers_leave_the_honest_workers_the_whole_reward(gallery: Played) -> None:
    """Measured: test accuracy 0.777 after round 1 and 0.801 after round 2 with 3 × 300 honest images;
    every wei of each round's worker reward goes to honest workers."""
    honest = {gallery.worker(i) for i in range(3)}
    for report in gallery.reports:
        assert set(report.accepted) == honest
        paid = {w for w, wei in report.worker_rewards_wei.items() if wei}
        assert paid <= honest and paid
    assert gallery.reports[-1].accuracy > 0.7


# ---------------------------------------------------------------- updates that pass ε


def test_a_free_rider_is_rejected_then_accepted_at_a_loss_and_never_paid(
    mnist: Mnist, tmp_path: Path
) -> None:
    """Round 1: the untrained initial model has loss 2.58 > ε, rejected. Round 2: last round's global
    model is a good model (loss 0.82 ≤ ε) and is accepted, but it only dilutes the honest updates: its
    leave-one-out contribution is −0.0211 and it is not paid. The round's model carries it: validation
    loss 0.6716 instead of 0.6505 without the free-rider (the harm a qualified non-contributor does)."""
    sim = deploy(mnist.shards[:5], [H, H, H, H, WB.FREE_RIDER], tmp_path / "store", "free-rider", rounds=2)
    played = play(sim, mnist, rounds=2)
    rider, honest = played.worker(4), [played.worker(i) for i in range(4)]
    r1, r2 = played.reports
    first_loss = played.losses[0][rider]
    assert rider in r1.rejected and first_loss is not None
    assert first_loss > 2 * 1e6  # ≈ ln 10 for the untrained logistic model
    assert rider in r2.accepted and r2.contributions[rider] < 0
    # its "update" is exactly the model the round started from: same loss as the round-1 aggregate
    assert played.losses[1][rider] == round(r1.validation_loss * 1e6)
    for report in played.reports:
        assert_only_honest_paid(report, honest, rider)
    assert without(played, 2, mnist, sim.workers[:4]).loss < r2.validation_loss


def test_limit_targeted_label_flip_is_unpaid_but_once_accepted_it_hurts_the_target_class(
    mnist: Mnist, tmp_path: Path
) -> None:
    """A worker that relabels its 7s as 1s (≈10 % of its labels). Round 1: loss 1.33 > ε, rejected.
    Round 2: from a better global model its update's loss is 0.96 ≤ ε, so it is aggregated; its
    leave-one-out contribution is −0.0056 and it earns nothing. The limit: the filter is on the total
    validation loss, which the flip barely moves (aggregate 0.6561 against 0.6505 without it), while
    the round's model recognises 7s far worse: recall of 7 on the test split 0.73 instead of 0.84."""
    sim = deploy(mnist.shards[:5], [H, H, H, H, WB.TARGETED_LABEL_FLIP], tmp_path / "store", "flip", rounds=2)
    played = play(sim, mnist, rounds=2)
    flipper, honest = played.worker(4), [played.worker(i) for i in range(4)]
    r1, r2 = played.reports
    assert flipper in r1.rejected
    assert flipper in r2.accepted and r2.contributions[flipper] < 0
    for report in played.reports:
        assert_only_honest_paid(report, honest, flipper)
    clean = without(played, 2, mnist, sim.workers[:4])
    assert clean.loss < r2.validation_loss < clean.loss + 0.02  # barely visible in the loss …
    recall = evaluate(sim.model_fn, sim.global_state, mnist.sevens).accuracy
    clean_recall = evaluate(sim.model_fn, clean.aggregate, mnist.sevens).accuracy
    assert recall < clean_recall - 0.05  # … but 7s are lost


def test_replaying_its_own_earlier_update_is_accepted_at_a_loss_and_unpaid(
    mnist: Mnist, tmp_path: Path
) -> None:
    """Round 1: it trains honestly (contribution +0.0065, paid 0.229 ETH). Round 2: it re-submits that
    same update without training; the stale model (loss 0.8901, exactly its round-1 loss) still passes ε
    but pulls the aggregate back: contribution −0.0133, not paid; validation loss of the round's model
    0.6600 instead of 0.6467 without it."""
    sim = deploy(mnist.shards[:5], [H, H, H, H, WB.REPLAY_OWN_UPDATE], tmp_path / "store", "replay", rounds=2)
    played = play(sim, mnist, rounds=2)
    replayer, honest = played.worker(4), [played.worker(i) for i in range(4)]
    r1, r2 = played.reports
    assert r1.contributions[replayer] > 0 and r1.worker_rewards_wei[replayer] > 0  # honest in round 1
    assert played.losses[1][replayer] == played.losses[0][replayer]  # the very same model again
    assert replayer in r2.accepted and r2.contributions[replayer] < 0
    assert_only_honest_paid(r2, honest, replayer)
    assert without(played, 2, mnist, sim.workers[:4]).loss < r2.validation_loss


def test_limit_an_inflated_sample_count_weighs_at_most_the_cap(mnist: Mnist, tmp_path: Path) -> None:
    """A worker with a good update (300 honest images) claims 3,000. Nothing can check the claim: the
    committee sees only the model, and the claim stands on chain and in the manifest. What the committee
    bounds is its weight: a claim counts at most SAMPLE_CAP × the round's median claim, so claiming 10×
    weighs (and scores) exactly as claiming 2×. (Before the cap it got 10/14 of the FedAvg weight.) The
    claim can still pay somewhat more than the true count: that is the open part of issue 14."""
    sim = deploy(mnist.shards[:5], [H, H, H, H, WB.INFLATED_SAMPLES], tmp_path / "store", "inflate", rounds=1)
    played = play(sim, mnist, rounds=1)
    inflater = played.worker(4)
    (report,) = played.reports
    assert sim.task.submitted_samples(1, inflater) == 10 * SHARD  # the claim stands on chain
    _, details = consensus_details(sim.store, sim.task, 1)
    assert {r["worker"]: r["samples"] for r in details.results}[inflater] == 10 * SHARD
    assert inflater in report.accepted

    # the same updates, re-trained (seeded) and re-evaluated with the claim at the cap
    updates = [(w.address, w.train(sim.task), len(w.data)) for w in sim.workers]
    at_cap = evaluate_round(
        sim.model_fn,
        played.starts[0],
        [(a, s, n * SAMPLE_CAP if a == inflater else n) for a, s, n in updates],
        mnist.validation,
        EPSILON,
    )
    assert at_cap.digest.hex() == details.model_digest  # 10× weighs exactly as 2×
    by_worker = {w.worker: w.contribution_ppm for w in at_cap.workers}
    assert by_worker[inflater] == report.contributions[inflater]


def test_attack_transforms() -> None:
    import torch

    g = {"w": torch.zeros(2, 2), "b": torch.ones(2), "n": torch.tensor(3)}
    local = {"w": torch.full((2, 2), 0.5), "b": torch.full((2,), 2.0), "n": torch.tensor(9)}
    flipped = sign_flip(g, local)
    assert torch.equal(flipped["w"], torch.full((2, 2), -0.5)) and torch.equal(flipped["b"], torch.zeros(2))
    scaled = scale_update(g, local, 10.0)
    assert torch.equal(scaled["w"], torch.full((2, 2), 5.0)) and torch.equal(
        scaled["b"], torch.full((2,), 11.0)
    )
    assert int(flipped["n"]) == int(scaled["n"]) == 3  # integer buffers come from the global model
    noise = random_weights(g, 1.0, seed=1)
    assert noise["w"].dtype == torch.float32 and torch.equal(noise["w"], random_weights(g, 1.0, seed=1)["w"])
    ds = Dataset(torch.zeros(4, 1, 28, 28), torch.tensor([7, 1, 7, 3]))
    assert flip_labels(ds, 7, 1).y.tolist() == [1, 1, 1, 3] and ds.y.tolist() == [7, 1, 7, 3]
    with pytest.raises(ValueError):
        AttackParameters(flip_source=1, flip_target=1)


def test_an_extrapolator_is_paid_under_leave_one_out_and_refused_under_trusted_data(
    mnist: Mnist, tmp_path: Path
) -> None:
    """A worker with no data submits w_r + (w_r − w_{r−1}) from the global models it received. On the real
    EVM with three validators: the trusted-data committee fetches the previous round's model, recognises
    the repeated global step ("stale") and pays it nothing in any round, while every honest worker is paid
    in every round; the same worker passes ε from round 2 (leave-one-out aggregates it)."""
    shards, behaviours = mnist.shards[:4], [H, H, H, WB.EXTRAPOLATOR]
    sim = deploy(
        shards, behaviours, tmp_path / "trusted", "extrap-trust", rounds=3, contribution="trusted-data"
    )
    extrapolator = sim.workers[3]
    for round_ in (1, 2, 3):
        report = sim.run_round(mnist.validation, mnist.test)
        assert report.consensus
        _, details = consensus_details(sim.store, sim.task, round_)
        mine = next(r for r in details.results if r["worker"] == extrapolator.address)
        assert mine["contribution"] == 0 and not mine["accepted"]
        if round_ > 1:
            assert mine["screen"] == "stale", mine
        assert all(report.contributions[w.address] > 0 for w in sim.workers[:3]), report.contributions
    loo = deploy(shards, behaviours, tmp_path / "loo", "extrap-loo", rounds=2)
    loo.run_round(mnist.validation, mnist.test)
    second = loo.run_round(mnist.validation, mnist.test)
    assert loo.workers[3].address in second.accepted
