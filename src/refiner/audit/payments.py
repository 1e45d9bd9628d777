"""Payment checks: what each worker and validator was owed by the contract's formulas, what was paid, and
whether the task's Ether adds up."""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address

from refiner.audit.checks import conclude
from refiner.audit.record import RoundRecord, TaskRecord
from refiner.audit.report import Check, eth, short
from refiner.chain import Event
from refiner.wire.details import ManifestDetails


@dataclass(frozen=True)
class Entitlement:
    account: str
    role: str  # "worker" | "validator"
    amount: int


def validator_unit(rec: TaskRecord, rr: RoundRecord) -> int:
    """A consensus round's validator reward per agreeing seat, rounded down as the contract does
    (⌊validatorReward / agreeing weight⌋; the dust returns to the budget at finalization); 0 otherwise."""
    weight = sum(rec.committee.get(rv.validator, 0) for rv in rr.agreeing)
    return rec.config.validator_reward // weight if weight else 0


def moved_to_escrow(rec: TaskRecord, rr: RoundRecord) -> int:
    """What finalizing a consensus round moved into the task's reward escrows: its worker reward when its
    manifest pays somebody, and the validator unit × the agreeing weight."""
    if not (rr.info.finalized and rr.info.consensus):
        return 0
    weight = sum(rec.committee.get(rv.validator, 0) for rv in rr.agreeing)
    pays = rr.info.payees != 0 and rr.info.total_contribution != 0
    return (rec.config.worker_reward if pays else 0) + validator_unit(rec, rr) * weight


def _position(e: Event) -> tuple[float, float]:
    """Where an event was logged; one of unknown origin counts as the latest."""
    inf = float("inf")
    return (inf if e.block_number is None else e.block_number, inf if e.log_index is None else e.log_index)


def entitlement(
    rec: TaskRecord, claim: Event, details: ManifestDetails | None
) -> tuple[list[Entitlement], str | None]:
    """What `claim` (a RewardClaimed labelled with round r) may pay, by the contract's rules: to a
    worker, the `earned` of its leaf in round r's consensus `details` less what its earlier claims paid;
    to a committee member, its weight × the validator unit of every round after its last claim up to r
    whose consensus it revealed. The candidates (a member may be a worker too), and why the worker side
    is unknown (no details) if it is."""
    account, r = to_checksum_address(claim["account"]), int(claim["round"])
    earlier = [
        e
        for e in rec.claims
        if e is not claim and to_checksum_address(e["account"]) == account and _position(e) < _position(claim)
    ]
    out: list[Entitlement] = []
    unknown = None
    if account in rec.committee:
        since = max((int(e["round"]) for e in earlier), default=0)
        units = sum(
            validator_unit(rec, rec.rounds[k])
            for k in range(since + 1, r + 1)
            if k in rec.rounds and any(rv.validator == account for rv in rec.rounds[k].agreeing)
        )
        out.append(Entitlement(account, "validator", units * rec.committee[account]))
    if details is None:
        unknown = "worker entitlements unknown without the consensus details"
    else:
        leaf = next((x for x in details.tree().results if x.worker.lower() == account.lower()), None)
        if leaf is not None:
            paid = sum(int(e["amount"]) for e in earlier)
            out.append(Entitlement(account, "worker", leaf.earned - paid))
    return [e for e in out if e.amount > 0], unknown


def check_payments(rec: TaskRecord, rr: RoundRecord, details: ManifestDetails | None) -> Check:
    """Every RewardClaimed that names this round pays what the contract's rules entitle it to (a worker:
    its leaf's earnings less its earlier claims; a validator: its seats' share of every round since its
    last claim that it agreed in), and a round without consensus pays nothing."""
    info = rr.info
    claims = rr.of("RewardClaimed")
    released = sum(int(e["amount"]) for e in rr.of("EscrowReleased"))
    refunded = sum(int(e["refunded"]) for e in rr.of("NoConsensus"))
    paid = sum(int(e["amount"]) for e in claims)
    problems: list[str] = []
    if not info.consensus:
        if claims:
            problems.append(f"{len(claims)} rewards paid with a round without consensus")
        return conclude(
            "payments", problems, f"no consensus: nobody paid, {eth(refunded)} returned to the budget"
        )
    unit = validator_unit(rec, rr)
    if rec.task.validator_unit(rr.round) != unit:
        problems.append(
            f"the contract's validator unit is {eth(rec.task.validator_unit(rr.round))}, not {eth(unit)}"
        )
    pays_workers = info.payees != 0 and info.total_contribution != 0
    unchecked = (
        ["worker entitlements unknown without the consensus details"]
        if details is None and pays_workers
        else []
    )
    for e in claims:
        account, amount = to_checksum_address(e["account"]), int(e["amount"])
        candidates, unknown = entitlement(rec, e, details)
        if any(c.amount == amount for c in candidates):
            continue
        if unknown is not None and account not in rec.committee:
            unchecked.append(f"{short(account)}'s {eth(amount)} unverified")
        elif candidates:
            problems.append(
                f"{short(account)} was paid {eth(amount)}, entitled to {eth(candidates[0].amount)}"
            )
        else:
            problems.append(f"{short(account)} was paid {eth(amount)} without an entitlement")
    summary = (
        f"{len(claims)} claims ({eth(paid)}) match their entitlements; {eth(released)} of dust returned; "
        f"{eth(moved_to_escrow(rec, rr))} moved to the reward escrow"
    )
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
    """The task's Ether: balance = owed() = budget + the running round's rewards + the reward escrows +
    the deposits held for workers; the escrows hold what consensus rounds moved there less the claims and
    the release of what was left unclaimed; the budget is what the events say (funding − withdrawals −
    escrowed + returned + forfeited deposits); funding + deposits = withdrawals + rewards paid + deposits
    paid back + owed (nothing created or lost). A surplus (Ether forced in without fund()) is owed to
    nobody and only noted."""
    task = rec.task
    balance, owed, budget, held = task.balance(), task.owed(), task.budget(), task.deposits_held()
    rounds = rec.rounds.values()
    running = sum(sum(rr.pools) for rr in rounds if not rr.info.finalized)
    escrow = rec.worker_escrow + rec.validator_escrow
    funded = sum(int(e["amount"]) for e in rec.funded)
    withdrawn = sum(int(e["amount"]) for e in rec.withdrawn)
    escrowed = sum(sum(rr.pools) for rr in rounds)
    released = sum(int(e["amount"]) for e in rec.releases)
    returned = sum(int(e["amount"]) for rr in rounds for e in rr.of("EscrowReleased")) + released
    returned += sum(int(e["refunded"]) for rr in rounds for e in rr.of("NoConsensus"))
    paid = sum(int(e["amount"]) for e in rec.claims)
    moved = sum(moved_to_escrow(rec, rr) for rr in rounds)
    forfeited = sum(int(e["amount"]) for e in rec.forfeits)
    deposits = funded + rec.config.sign_up_deposit * len(rec.signed_up)
    problems = check_deposits(rec, held)
    if owed != budget + running + escrow + held:
        problems.append(
            f"owed() {eth(owed)} ≠ budget {eth(budget)} + running round {eth(running)} + escrow {eth(escrow)}"
            f" + deposits held {eth(held)}"
        )
    if escrow != moved - paid - released:
        problems.append(
            f"the reward escrows hold {eth(escrow)}, not {eth(moved)} moved there − {eth(paid)} claimed − "
            f"{eth(released)} released"
        )
    if budget != funded - withdrawn - escrowed + returned + forfeited:
        problems.append(
            f"budget {eth(budget)} ≠ {eth(funded)} funded − {eth(withdrawn)} withdrawn − "
            f"{eth(escrowed)} escrowed + {eth(returned)} returned + {eth(forfeited)} forfeited deposits"
        )
    refunds = sum(amount for _, amount in deposit_refunds(rec))
    if deposits != withdrawn + paid + refunds + owed:
        problems.append(
            f"{eth(deposits)} paid in ≠ {eth(withdrawn)} withdrawn + {eth(paid + refunds)} paid + "
            f"{eth(owed)} owed"
        )
    if balance < owed:
        problems.append(f"the balance {eth(balance)} is {eth(owed - balance)} short of owed() {eth(owed)}")
    summary = (
        f"balance {eth(balance)} = owed: budget {eth(budget)}"
        + (f" + running round {eth(running)}" if running else "")
        + f" + unclaimed rewards {eth(escrow)}"
        + (f" + deposits held {eth(held)}" if held else "")
        + f"; {eth(deposits)} deposited = {eth(withdrawn)} withdrawn + {eth(paid + refunds)} paid + owed"
    )
    if released:
        summary += f"; {eth(released)} unclaimed returned to the budget after the claim window"
    if forfeited:
        summary += f"; {eth(forfeited)} of deposits forfeited to the budget"
    if balance > owed:
        summary = summary.replace(" = owed:", f" ≥ owed {eth(owed)}:", 1)
        summary += f"; {eth(balance - owed)} surplus sent without fund() (owed to nobody)"
    return conclude("ledger", problems, summary)
