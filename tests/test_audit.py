"""`refiner audit`: real tasks on the embedded EVM, a directory store and real encryption, audited from
their events and stored manifests. Logistic model and small MNIST shards, so each task runs in seconds."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from refiner.audit import AuditError, TaskAudit, Verdict, audit_task, exit_code, render
from refiner.audit.checks import check_commitments
from refiner.audit.payments import check_ledger, check_payments
from refiner.audit.record import read_record
from refiner.chain import Chain, Durations, Event, TaskConfig, WorkerResult
from refiner.chain.earnings import with_earnings
from refiner.fl.data import Dataset, load_mnist, shuffle_labels, split_mnist
from refiner.reasons import result_reason
from refiner.roles import Evaluated, Validator, ValidatorBehaviour, WorkerBehaviour
from refiner.simulation import Simulation
from refiner.storage import DirectoryStore, Handle
from refiner.units import ETH
from refiner.wire.details import ManifestDetails, ProtocolError, load_details, store_details
from refiner.wire.memos import salt_for
from refiner.wire.reads import consensus_details
from refiner.wire.spec import Contribution

H, S = WorkerBehaviour.HONEST, WorkerBehaviour.SHUFFLED_LABELS
VH, VN = ValidatorBehaviour.HONEST, ValidatorBehaviour.NON_REVEALER
ROUND_CHECKS = ["commitments", "consensus", "details", "payments", "evaluation", "aggregate"]

Data = tuple[Dataset, list[Dataset], Dataset]


@pytest.fixture(scope="module")
def mnist() -> Data:
    train, test = load_mnist()
    validation, shards = split_mnist(train, [400, 400, 400], validation_size=200, seed=1)
    shards[2] = shuffle_labels(shards[2], seed=3)  # the third worker trains on shuffled labels
    return validation, shards, test


def deploy(
    mnist: Data,
    store: Path,
    validators: list[ValidatorBehaviour],
    rounds: int,
    label: str,
    contribution: Contribution = "leave-one-out",
    epsilon: float = 1.0,
) -> Simulation:
    config = TaskConfig(
        description="",
        worker_reward=ETH,
        validator_reward=3 * ETH // 10,
        target_accuracy=1.0,
        max_rounds=rounds,
        max_workers=3,
        committee_size=len(validators),
        epsilon=epsilon,
        durations=Durations(
            recruitment=600, training=600, evaluation=600, reveal=600, idle=6000, claim=60000
        ),
        sign_up_deposit=ETH // 100,  # paid back with round 1: the ledger check follows it
    )
    return Simulation.deploy(
        Chain.connect(),
        DirectoryStore(store),
        mnist[1],
        [H, H, S],
        validators,
        config=config,
        model="logistic",
        lr=0.05,
        contribution=contribution,
        stake_unit=ETH,  # one seat each: τ = W
        label=label,
    )


def marks(audit: TaskAudit, round_: int) -> dict[str, bool | None]:
    return {c.name: c.ok for c in audit.round(round_).checks}


# ---------------------------------------------------------------------------------------------- honest


@pytest.fixture(scope="module")
def honest(mnist: Data, tmp_path_factory: pytest.TempPathFactory) -> Simulation:
    """Rounds 1–2 reach consensus (a shuffled-label worker, a validator that never reveals); in round 3
    only one of four validators reveals (no consensus); round 4 has started and is still training."""
    validation, _, test = mnist
    sim = deploy(mnist, tmp_path_factory.mktemp("honest"), [VH, VH, VH, VN], rounds=4, label="audit-honest")
    for _ in range(2):
        assert sim.run_round(validation, test).consensus
    task, committee = sim.task, sim.committee
    sim.requester.start_round(task, sim.global_state, validation)
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    work = {v.address: v.evaluate(task) for v in committee}
    for v in committee:
        v.commit_manifest(task, work[v.address])
    committee[0].reveal_manifest(task, work[committee[0].address])
    sim.chain.increase_time(task.config().durations.reveal + 1)
    task.advance(sim.requester.account)
    assert "NoConsensus" in sim.requester.finalize_round(task).names()
    sim.requester.start_round(task, sim.global_state, validation)
    return sim


def audit_with_keys(sim: Simulation) -> TaskAudit:
    """The whole audit: with the requester's key (the aggregates) and a committee member's (the
    evaluations)."""
    return audit_task(
        sim.chain,
        sim.store,
        sim.task.address,
        requester=sim.requester.account,
        evaluator=sim.committee[0].account,
    )


@pytest.fixture(scope="module")
def honest_audit(honest: Simulation) -> TaskAudit:
    return audit_with_keys(honest)


def test_an_honest_task_passes_with_the_requester_key(honest: Simulation, honest_audit: TaskAudit) -> None:
    audit = honest_audit
    assert [r.round for r in audit.rounds] == [1, 2, 3, 4]
    silent = next(v for v in honest.validators if v.behaviour is VN)
    shuffled = honest.workers[2]
    for r in (1, 2):
        assert marks(audit, r) == dict.fromkeys(ROUND_CHECKS, True), audit.round(r).checks
        assert audit.round(r).verdict is Verdict.PASS
        round_ = audit.round(r)
        assert f"never revealed: {silent.address[:6]}" in round_.check("commitments").detail
        assert "3 of 4 weight" in round_.check("consensus").detail
        assert "2 of 3 workers paid" in round_.check("evaluation").detail  # the shuffled worker is rejected
        assert shuffled.address[:6] not in round_.check("payments").detail  # nothing owed, nothing unclaimed
    # no consensus: nobody was paid for anything, so there is no evaluation to check
    assert marks(audit, 3) == {"commitments": True, "consensus": True, "payments": True}
    assert "1 of 4" in audit.round(3).check("consensus").detail
    assert "1.3 ETH returned" in audit.round(3).check("payments").detail
    assert audit.round(3).verdict is Verdict.PASS
    assert audit.round(4).verdict is Verdict.IN_PROGRESS
    # the task runs this release's code; its ledger: balance = owed = budget + round 4's escrow
    assert [(c.name, c.ok) for c in audit.checks] == [("code", True), ("ledger", True)]
    assert exit_code(audit) == 0
    assert audit_task(honest.chain, honest.store, honest.task.address, rounds=[2]).rounds[0].round == 2


def test_a_trusted_data_task_passes_and_its_manifests_carry_the_screen(
    mnist: Data, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """On the real EVM: the validators screen with trusted-data; in round 2 the shuffled worker is within
    ε and rejected by the screen (cosine −0.42 against honest +0.58), the honest pair is paid by its
    (equal) data, and the audit's re-run of the same measure rebuilds every manifest."""
    validation, _, test = mnist
    sim = deploy(
        mnist,
        tmp_path_factory.mktemp("trusted"),
        [VH, VH],
        rounds=2,
        label="audit-trust",
        contribution="trusted-data",
        epsilon=2.5,  # loose: the shuffled worker's 2.18 in round 2 is within it
    )
    for _ in range(2):
        assert sim.run_round(validation, test).consensus
    audit = audit_with_keys(sim)
    assert all(r.verdict is Verdict.PASS for r in audit.rounds), [r.checks for r in audit.rounds]
    _, details = consensus_details(sim.store, sim.task, 2)
    by_worker = {r["worker"]: r for r in details.results}
    shuffled = by_worker[sim.workers[2].address]
    assert shuffled["screen"] == "low-trust" and not shuffled["accepted"]
    assert "does not point the way" in result_reason(shuffled, 2_500_000)
    honest_pair = [by_worker[w.address] for w in sim.workers[:2]]
    assert [r["contribution"] for r in honest_pair] == [500_000, 500_000]
    assert all(r["screen"] is None and r["trust"] > 0 for r in honest_pair)


def test_without_the_requester_key_consensus_rounds_are_incomplete(honest: Simulation) -> None:
    """Without the key nobody can re-run the evaluation: what was paid is consistent with the manifest,
    but whether the manifest is right is not known, so the verdict is INCOMPLETE, not PASS."""
    audit = audit_task(honest.chain, honest.store, honest.task.address)
    for r in (1, 2):
        expected: dict[str, bool | None] = dict.fromkeys(ROUND_CHECKS, True)
        expected.update(evaluation=None, aggregate=None)
        assert marks(audit, r) == expected
        assert "committee member's key" in audit.round(r).check("evaluation").detail
        assert "requester's key" in audit.round(r).check("aggregate").detail
        assert audit.round(r).verdict is Verdict.INCOMPLETE
    assert audit.round(3).verdict is Verdict.PASS
    assert exit_code(audit) == 0


def test_the_rendering_has_a_table_per_round_and_its_verdict(honest_audit: TaskAudit) -> None:
    audit = honest_audit
    console = Console(record=True, width=240)
    console.print(render(audit))
    text = console.export_text()
    for expected in (
        "Round 1",
        "Round 4",
        "commitments",
        "✓",
        "verdict: PASS",
        "verdict: IN PROGRESS",
        "ledger",
    ):
        assert expected in text
    assert "✗" not in text


def test_a_wrong_requester_key_a_missing_round_or_a_non_task_is_refused(honest: Simulation) -> None:
    chain, store, task = honest.chain, honest.store, honest.task.address
    with pytest.raises(AuditError, match="not the requester's"):
        audit_task(chain, store, task, requester=honest.workers[0].account)
    with pytest.raises(AuditError, match="round 5 does not exist"):
        audit_task(chain, store, task, rounds=[1, 5])
    with pytest.raises(AuditError, match="no contract"):
        audit_task(chain, store, honest.workers[0].address)
    with pytest.raises(AuditError, match="not a Refiner task"):
        audit_task(chain, store, honest.registry.address)


def test_doctored_records_fail_the_commitment_and_payment_checks(honest: Simulation) -> None:
    """What a correct contract never emits, the checks still catch (so they are not vacuous)."""
    record = read_record(honest.task)
    rr = record.rounds[1]
    assert check_commitments(record, rr).ok is True
    first = rr.of("ManifestCommitted")[0]
    rr.events["ManifestCommitted"][0] = dataclasses.replace(
        first, args={**first.args, "commitment": b"\1" * 32}
    )
    doctored = check_commitments(record, rr)
    assert doctored.ok is False
    who = first["validator"]
    assert doctored.detail == f"{who[:6]}…{who[-4:]}'s manifest and salt do not open its commitment"
    details = load_details(honest.store, rr.agreeing[0].manifest, rr.agreeing[0].salt)
    assert check_payments(record, rr, details).ok is True
    outsider = honest.workers[2].address  # the shuffled-label worker: rejected, owed nothing
    forged = Event("RewardClaimed", {"round": 1, "account": outsider, "amount": 5})
    rr.events["RewardClaimed"].append(forged)
    record.claims.append(forged)
    payments = check_payments(record, rr, details)
    assert payments.ok is False
    assert "was paid 5 wei without an entitlement" in payments.detail
    ledger = check_ledger(record)  # 5 wei left the reward escrows that the contract still holds
    assert ledger.ok is False and "the reward escrows hold" in ledger.detail


def test_doctored_deposits_fail_the_ledger_check(honest: Simulation) -> None:
    """Each worker's sign-up deposit came back with its round-1 submission: the ledger follows them, and
    a deposit paid back twice, or forfeited on top, does not balance."""
    record = read_record(honest.task)
    deposit = record.config.sign_up_deposit
    assert deposit and not record.deposit_refunds and not record.forfeits  # paid back with the submissions
    assert check_ledger(record).ok is True
    worker = honest.workers[0].address
    record.deposit_refunds.append(Event("DepositRefunded", {"worker": worker, "amount": deposit}))
    twice = check_ledger(record)
    assert twice.ok is False and "paid back twice" in twice.detail
    record.deposit_refunds.pop()
    record.forfeits.append(Event("DepositsForfeited", {"workers": 1, "amount": deposit, "budget": 0}))
    forfeited = check_ledger(record)
    assert forfeited.ok is False
    assert "0 workers missed round 1" in forfeited.detail and "deposits do not balance" in forfeited.detail


# ------------------------------------------------------------------------------------------- dishonest


Forge = Callable[[Simulation, Evaluated], Evaluated]


def run_round_with_forgers(sim: Simulation, validation: Dataset, forgers: int, forge: Forge) -> None:
    """One round in which the first `forgers` committee members commit and reveal `forge(work)` instead
    of their honest work; workers and validators then claim what the consensus lets them."""
    task = sim.task
    sim.requester.start_round(task, sim.global_state, validation)
    round_ = task.current_round()
    for w in sim.workers:
        w.submit_training_results(task, w.train(task))
    committee: list[Validator] = sim.committee
    work = [v.evaluate(task) for v in committee]
    work = [forge(sim, w) if i < forgers else w for i, w in enumerate(work)]
    for v, w in zip(committee, work, strict=True):
        v.commit_manifest(task, w)
    for v, w in zip(committee, work, strict=True):
        v.reveal_manifest(task, w)
    assert "RoundFinalized" in sim.requester.finalize_round(task).names()
    for w in sim.workers:
        # without consensus details that rebuild the root, workers cannot prove their leaves
        with contextlib.suppress(ProtocolError):
            w.claim_reward(task, round_)
    for v in committee:
        v.claim_reward(task, round_)


def sealed(sim: Simulation, details: ManifestDetails) -> Handle:
    """Store forged details as their validator stores its own: sealed under its commitment salt."""
    (author,) = [v for v in sim.committee if v.address == details.validator]
    return store_details(sim.store, details.to_bytes(), salt_for(author.account, details.task, details.round))


def pay_the_shuffled_worker(sim: Simulation, work: Evaluated) -> Evaluated:
    """A consistent false manifest: the shuffled-label worker accepted with a contribution, its details
    rebuilt by hand so that everything but the evaluation itself checks out."""
    shuffled = sim.workers[2].address
    results = [
        {**r, "accepted": True, "contribution": 50_000} if r["worker"] == shuffled else r
        for r in work.details.results
    ]
    assert results != work.details.results
    # the earnings follow the forged contributions (round 1: nothing earned before)
    forged = [WorkerResult(r["worker"], r["accepted"], r["samples"], r["contribution"]) for r in results]
    shares = with_earnings(forged, sim.task.config().worker_reward, {})
    results = [{**r, "earned": x.earned} for r, x in zip(results, shares, strict=True)]
    details = dataclasses.replace(work.details, results=results)
    manifest = details.manifest(sealed(sim, details))
    return Evaluated(work.round, manifest, details, None, {})


def test_a_colluding_majority_is_caught_only_by_re_running_the_evaluation(
    mnist: Data, tmp_path: Path
) -> None:
    sim = deploy(mnist, tmp_path / "store", [VH, VH, VH], rounds=1, label="audit-collude")
    run_round_with_forgers(sim, mnist[0], forgers=2, forge=pay_the_shuffled_worker)
    shuffled = sim.workers[2].address
    assert sim.task.worker_claims(shuffled)[1] > 0  # the shuffled worker was paid

    audit = audit_with_keys(sim)
    expected: dict[str, bool | None] = dict.fromkeys(ROUND_CHECKS, True)
    expected["evaluation"] = False
    assert marks(audit, 1) == expected, audit.round(1).checks
    detail = audit.round(1).check("evaluation").detail
    assert "results_root" in detail and "total_contribution" in detail and "payees" in detail
    assert f"{shuffled[:6]}…{shuffled[-4:]}: manifest accepted 50000 ppm, re-run rejected 0 ppm" in detail
    honest = sim.committee[2].address  # the one validator that did not forge
    assert f"the re-run matches the reveal of {honest[:6]}…{honest[-4:]}" in detail
    assert (
        audit.round(1)
        .check("consensus")
        .detail.endswith(
            f"2 of 3 weight (2 validators); revealed another manifest: {honest[:6]}…{honest[-4:]}"
        )
    )
    assert audit.round(1).verdict is Verdict.FAIL and exit_code(audit) == 1
    # without the key the forgery is consistent with everything public
    assert audit_task(sim.chain, sim.store, sim.task.address).round(1).verdict is Verdict.INCOMPLETE


def point_to_other_details(sim: Simulation, work: Evaluated) -> Evaluated:
    """The honest vote, but the details handle names details that drop the shuffled-label worker."""
    shuffled = sim.workers[2].address
    details = dataclasses.replace(
        work.details, results=[r for r in work.details.results if r["worker"] != shuffled]
    )
    manifest = dataclasses.replace(work.manifest, details_handle=bytes(sealed(sim, details)))
    return Evaluated(work.round, manifest, details, None, {})


def test_details_that_do_not_rebuild_the_manifest_fail(mnist: Data, tmp_path: Path) -> None:
    sim = deploy(mnist, tmp_path / "store", [VH, VH, VH], rounds=1, label="audit-details")
    run_round_with_forgers(sim, mnist[0], forgers=3, forge=point_to_other_details)
    audit = audit_with_keys(sim)
    details = audit.round(1).check("details")
    assert details.ok is False
    assert details.detail.count("do not rebuild the manifest's results_root") == 3
    # the vote itself is honest: the re-run agrees; the workers could not claim without details
    checks = marks(audit, 1)
    assert checks["evaluation"] is True and checks["consensus"] is True
    assert checks["payments"] is None
    assert "worker entitlements unknown" in audit.round(1).check("payments").detail
    assert audit.round(1).verdict is Verdict.FAIL and exit_code(audit) == 1


def test_details_missing_from_the_store_leave_the_round_incomplete(mnist: Data, tmp_path: Path) -> None:
    validation, _, test = mnist
    sim = deploy(mnist, tmp_path / "store", [VH, VH, VH], rounds=1, label="audit-missing")
    sim.run_round(validation, test)
    store = sim.store
    assert isinstance(store, DirectoryStore)
    reveals = sim.task.revealed_manifests(1)
    paths = [store.path_of(Handle.from_bytes(m.details_handle)) for m in reveals.values()]
    paths[0].unlink()
    paths[1].unlink()
    paths[2].write_bytes(b"{}")  # the store's copy is corrupt
    audit = audit_task(
        sim.chain,
        store,
        sim.task.address,
        requester=sim.requester.account,
        evaluator=sim.committee[0].account,
    )
    details = audit.round(1).check("details")
    assert details.ok is None
    assert details.detail.count("not in the store") == 2 and "copy is corrupt" in details.detail
    assert marks(audit, 1) == {
        "commitments": True,
        "consensus": True,
        "details": None,
        "payments": None,  # workers' entitlements need the details
        "evaluation": True,  # the re-run needs only the round's inputs
        "aggregate": None,  # its key envelope is named in the details
    }
    assert audit.round(1).verdict is Verdict.INCOMPLETE and exit_code(audit) == 0


def test_the_re_run_needs_a_committee_member_and_the_requester_cannot_read_updates(
    honest: Simulation,
) -> None:
    chain, store, task = honest.chain, honest.store, honest.task.address
    with pytest.raises(AuditError, match="not a committee member"):
        audit_task(chain, store, task, evaluator=honest.workers[0].account)
    audit = audit_task(chain, store, task, requester=honest.requester.account)
    assert audit.round(1).check("aggregate").ok is True
    assert audit.round(1).check("evaluation").ok is None
    assert audit.round(1).verdict is Verdict.INCOMPLETE
