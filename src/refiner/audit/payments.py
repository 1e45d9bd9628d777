"""Payment checks: what each worker and validator was owed by the contract's formulas, what was paid, and
whether the task's Ether adds up."""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address

from refiner.audit.checks import conclude
from refiner.audit.record import RoundRecord, TaskRecord
from refiner.audit.report import Check, eth, short
from refiner.wire.details import ManifestDetails


@dataclass(frozen=True)
class Entitlement:
    account: str
    role: str  # "worker" | "validator"
    amount: int


def entitlements(
    rec: TaskRecord, rr: RoundRecord, details: ManifestDetails | None
) -> tuple[int, list[Entitlement], list[Entitlement] | None]:
    """The validator unit and the exact wei the contract lets each payee claim in a consensus round,
    rounding down as it does: a worker gets ⌊workerReward·c / Σc⌋, an agreeing validator
    ⌊validatorReward / agreeing weight⌋ per seat. (The validator dust returns to the budget at finalization;
    the workers' only once every payee has claimed, else with the unclaimed rewards.) Returns the unit,
    the validators' and the workers' entitlements; the latter None if the round paid workers and its
    consensus `details` are unavailable."""
    weight = sum(rec.committee.get(rv.validator, 0) for rv in rr.agreeing)
    unit = rec.config.validator_reward // weight if weight else 0
    validators = [
        Entitlement(rv.validator, "validator", unit * rec.committee.get(rv.validator, 0))
        for rv in rr.agreeing
    ]
    total = rr.info.total_contribution
    if rr.info.payees == 0 or total == 0:  # the contract returned the whole worker pool at finalization
        return unit, validators, []
    if details is None:
        return unit, validators, None
    reward = rec.config.worker_reward
    paid = [r for r in details.tree().results if r.paid]
    workers = [
        Entitlement(to_checksum_address(r.worker), "worker", reward * r.contribution // total) for r in paid
    ]
    return unit, validators, workers


def check_payments(rec: TaskRecord, rr: RoundRecord, details: ManifestDetails | None) -> Check:
    """Every RewardClaimed equals its entitlement, nobody else was paid, and the round's escrow balances:
    escrowed = paid + returned to the budget + still held."""
    info = rr.info
    claims = [(to_checksum_address(e["account"]), int(e["amount"])) for e in rr.of("RewardClaimed")]
    released = sum(int(e["amount"]) for e in rr.of("EscrowReleased"))
    refunded = sum(int(e["refunded"]) for e in rr.of("NoConsensus"))
    paid = sum(amount for _, amount in claims)
    held = info.worker_escrow + info.validator_escrow
    escrowed = sum(rr.pools)
    problems: list[str] = []
    if escrowed != paid + released + refunded + held:
        problems.append(
            f"escrow does not balance: {eth(escrowed)} escrowed ≠ {eth(paid)} paid + "
            f"{eth(released + refunded)} returned + {eth(held)} held"
        )
    if not info.consensus:
        if claims:
            problems.append(f"{len(claims)} rewards paid in a round without consensus")
        return conclude(
            "payments", problems, f"no consensus: nobody paid, {eth(refunded)} returned to the budget"
        )
    unit, validators, workers = entitlements(rec, rr, details)
    if info.validator_unit != unit:
        problems.append(f"the contract's validator unit is {eth(info.validator_unit)}, not {eth(unit)}")
    unchecked = [] if workers is not None else ["worker entitlements unknown without the consensus details"]
    remaining = validators + (workers or [])
    worker_claims = 0
    for account, amount in claims:
        match = next((e for e in remaining if e.account == account and e.amount == amount), None)
        if match is not None:
            remaining.remove(match)
            worker_claims += match.role == "worker"
            continue
        expected = [e for e in remaining if e.account == account]
        if expected:
            problems.append(f"{short(account)} was paid {eth(amount)}, entitled to {eth(expected[0].amount)}")
        elif workers is None and account in rr.submissions:
            unchecked.append(f"{short(account)}'s {eth(amount)} unverified")
        else:
            problems.append(f"{short(account)} was paid {eth(amount)} without an entitlement")
    if workers is not None and info.workers_paid != worker_claims:
        problems.append(f"the contract counts {info.workers_paid} paid workers, the events {worker_claims}")
    summary = f"{len(claims)} claims ({eth(paid)}) match their entitlements; {eth(released)} returned"
    unclaimed = [e for e in remaining if e.amount > 0]
    if unclaimed:
        where = "still in escrow" if held else "returned to the budget"
        who = ", ".join(f"{short(e.account)} {eth(e.amount)} ({e.role})" for e in unclaimed)
        summary += f"; unclaimed ({where}): {who}"
    return conclude("payments", problems, summary, unchecked)


def deposit_refunds(rec: TaskRecord) -> list[tuple[str, int]]:
    """(worker, amount) of each deposit paid back: one per round-1 submission (the contract pays it with
    the submission, without an event of its own), and the `DepositRefunded` events."""
    first = rec.rounds.get(1)
    deposit = rec.config.sign_up_deposit
    with_submission = [(w, deposit) for w in first.submissions] if first and deposit else []
    return with_submission + [(str(e["worker"]), int(e["amount"])) for e in rec.deposit_refunds]


def check_deposits(rec: TaskRecord, held: int) -> list[str]:
    """Workers' sign-up deposits: each paid exactly once, each paid back at most once and in full, and
    every one either paid back (with the round-1 submission, or by `refundDeposit` when the task ended
    before round 1), forfeited to the budget or still held (`depositsHeld()`)."""
    deposit = rec.config.sign_up_deposit
    paid_in = deposit * len(rec.signed_up)
    refunds = deposit_refunds(rec)
    refunded = sum(amount for _, amount in refunds)
    forfeited = sum(int(e["amount"]) for e in rec.forfeits)
    problems = [
        f"{short(w)} was paid back {eth(a)}, not its deposit {eth(deposit)}"
        for w, a in refunds
        if a != deposit
    ]
    signed = {str(e["worker"]) for e in rec.signed_up}
    twice = {w for w, _ in refunds if [x for x, _ in refunds].count(w) > 1}
    problems += [f"{short(w)}'s deposit was paid back twice" for w in sorted(twice)]
    problems += [f"{short(w)} was paid a deposit it never paid" for w, _ in refunds if w not in signed]
    first = rec.rounds.get(1)
    absent = len(signed) - len(first.submissions) if first else 0
    if rec.forfeits and forfeited != deposit * absent:
        problems.append(
            f"{eth(forfeited)} forfeited, but {absent} workers missed round 1 ({eth(deposit)} each)"
        )
    if paid_in != refunded + forfeited + held:
        problems.append(
            f"deposits do not balance: {eth(paid_in)} paid ≠ {eth(refunded)} paid back + "
            f"{eth(forfeited)} forfeited + {eth(held)} held"
        )
    return problems


def check_ledger(rec: TaskRecord) -> Check:
    """The task's Ether: balance = owed() = budget + every round's remaining escrow + the deposits held
    for workers; the budget is what the events say (funding − withdrawals − escrowed + returned +
    forfeited deposits); funding + deposits = withdrawals + rewards paid + deposits paid back + owed
    (nothing created or lost). A surplus (Ether forced in without fund()) is owed to nobody and only
    noted."""
    task = rec.task
    balance, owed, budget, held = task.balance(), task.owed(), task.budget(), task.deposits_held()
    rounds = rec.rounds.values()
    escrow = sum(rr.info.worker_escrow + rr.info.validator_escrow for rr in rounds)
    funded = sum(int(e["amount"]) for e in rec.funded)
    withdrawn = sum(int(e["amount"]) for e in rec.withdrawn)
    escrowed = sum(sum(rr.pools) for rr in rounds)
    returned = sum(int(e["amount"]) for rr in rounds for e in rr.of("EscrowReleased"))
    returned += sum(int(e["refunded"]) for rr in rounds for e in rr.of("NoConsensus"))
    paid = sum(int(e["amount"]) for rr in rounds for e in rr.of("RewardClaimed"))
    forfeited = sum(int(e["amount"]) for e in rec.forfeits)
    paid += sum(amount for _, amount in deposit_refunds(rec))
    deposits = funded + rec.config.sign_up_deposit * len(rec.signed_up)
    problems = check_deposits(rec, held)
    if owed != budget + escrow + held:
        problems.append(
            f"owed() {eth(owed)} ≠ budget {eth(budget)} + escrow {eth(escrow)} + deposits held {eth(held)}"
        )
    if budget != funded - withdrawn - escrowed + returned + forfeited:
        problems.append(
            f"budget {eth(budget)} ≠ {eth(funded)} funded − {eth(withdrawn)} withdrawn − "
            f"{eth(escrowed)} escrowed + {eth(returned)} returned + {eth(forfeited)} forfeited deposits"
        )
    if deposits != withdrawn + paid + owed:
        problems.append(
            f"{eth(deposits)} paid in ≠ {eth(withdrawn)} withdrawn + {eth(paid)} paid + {eth(owed)} owed"
        )
    if balance < owed:
        problems.append(f"the balance {eth(balance)} is {eth(owed - balance)} short of owed() {eth(owed)}")
    summary = (
        f"balance {eth(balance)} = owed: budget {eth(budget)} + escrow {eth(escrow)}"
        + (f" + deposits held {eth(held)}" if held else "")
        + f"; {eth(deposits)} deposited = {eth(withdrawn)} withdrawn + {eth(paid)} paid + owed"
    )
    if forfeited:
        summary += f"; {eth(forfeited)} of deposits forfeited to the budget"
    if balance > owed:
        summary = summary.replace(" = owed:", f" ≥ owed {eth(owed)}:", 1)
        summary += f"; {eth(balance - owed)} surplus sent without fund() (owed to nobody)"
    return conclude("ledger", problems, summary)
