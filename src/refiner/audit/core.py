"""`audit_task`: read a task's whole record and run every check on each round."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from web3.exceptions import Web3Exception

from refiner.audit.checks import check_commitments, check_consensus, check_details
from refiner.audit.payments import check_ledger, check_payments
from refiner.audit.record import RoundRecord, TaskRecord, read_record
from refiner.audit.replay import check_aggregate, check_evaluation
from refiner.audit.report import AuditError, Check, RoundAudit, TaskAudit, verdict_of
from refiner.chain import Chain, Task
from refiner.chain.build import load_artifact
from refiner.fl.measures import ContributionMeasure
from refiner.storage import Store
from refiner.wire.details import ManifestDetails

NEEDS_KEY = "needs the requester's key: the aggregates are encrypted to the requester"
NEEDS_EVALUATOR = "needs a committee member's key: workers encrypt their updates to the committee only"


def audit_task(
    chain: Chain,
    store: Store,
    task: str,
    *,
    rounds: Sequence[int] | None = None,
    requester: LocalAccount | None = None,
    evaluator: LocalAccount | None = None,
    measure: ContributionMeasure | None = None,
) -> TaskAudit:
    """Audit `task` from its events and the manifests in `store`: every round (or only `rounds`) gets a
    verdict, and the task its Ether ledger. With the `requester`'s key the consensus aggregates are
    decrypted and their digests checked; with a committee member's key (`evaluator`: workers encrypt
    their updates to the committee only) the committee's evaluation is re-run with `measure` (the
    one the task's description names, unless given). Checks without the key they need stay unchecked
    and a consensus round is then INCOMPLETE.

    Raises AuditError if `task` is not a Refiner task on `chain`, a round does not exist, or `requester`
    is not the task's requester, or `evaluator` is not on its committee."""
    try:
        contract = Task(chain, task)
        code = bytes(chain.w3.eth.get_code(contract.address))
        if not code:
            raise AuditError(f"no contract at {contract.address} on {chain.url}")
        owner = contract.requester()
    except (ValueError, Web3Exception, TransactionFailed) as exc:
        raise AuditError(
            f"{task} is not a Refiner task on {chain.url}: {exc or 'its calls revert'}"
        ) from None
    if requester is not None and requester.address.lower() != owner.lower():
        raise AuditError(
            f"the key given is {requester.address}'s, not the requester's ({owner}): "
            "only the task's requester can decrypt what the evaluation needs"
        )
    record = read_record(contract)
    wanted = sorted(set(rounds)) if rounds is not None else sorted(record.rounds)
    missing = [r for r in wanted if r not in record.rounds]
    if missing:
        raise AuditError(
            f"round {missing[0]} does not exist: task {contract.address} has {len(record.rounds)}"
        )
    if evaluator is not None and evaluator.address not in contract.committee():
        raise AuditError(
            f"the evaluator key is {evaluator.address}'s, not a committee member's: workers encrypt their "
            "updates to the committee only"
        )
    audits = [_audit_round(record, record.rounds[r], store, requester, evaluator, measure) for r in wanted]
    checks = [_check_code(code), check_ledger(record)]
    keys = requester is not None and evaluator is not None
    return TaskAudit(contract.address, contract.status(), audits, checks, keys)


def _check_code(code: bytes) -> Check:
    """Whether the task runs the RefinerTask code this audit's formulas mirror. Another build of the same
    source differs (compiler metadata), so a mismatch leaves the task unchecked rather than failed."""
    if code == load_artifact("RefinerTask").deployed_bytecode:
        return Check("code", True, "the task runs this release's RefinerTask code")
    return Check(
        "code", None, f"runtime code {keccak(code).hex()[:8]} is not this release's RefinerTask build"
    )


def _audit_round(
    rec: TaskRecord,
    rr: RoundRecord,
    store: Store,
    requester: LocalAccount | None,
    evaluator: LocalAccount | None,
    measure: ContributionMeasure | None,
) -> RoundAudit:
    checks = [check_commitments(rec, rr)]
    if not rr.info.finalized:  # consensus and payments are only settled by finalizeRound
        return RoundAudit(rr.round, verdict_of(checks, finalized=False), checks)
    checks.append(check_consensus(rec, rr))
    details: ManifestDetails | None = None
    if rr.info.consensus:
        found, details = check_details(rec, rr, store)
        checks.append(found)
    checks.append(check_payments(rec, rr, details))
    if rr.info.consensus:  # without consensus nothing was paid for, so there is no evaluation to check
        if evaluator is None:
            checks.append(Check("evaluation", None, NEEDS_EVALUATOR))
        else:
            checks.append(check_evaluation(rec, rr, store, evaluator, measure, details))
        if requester is None:
            checks.append(Check("aggregate", None, NEEDS_KEY))
        else:
            checks.append(check_aggregate(rec, rr, store, requester))
    return RoundAudit(rr.round, verdict_of(checks), checks)
