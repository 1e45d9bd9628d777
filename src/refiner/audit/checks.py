"""The checks anybody can run from the chain and the store: commitments, consensus, manifest details,
payments, and the task's Ether ledger. Each recomputes what the contract computed, from the events."""

from __future__ import annotations

from collections import defaultdict

from eth_utils import to_checksum_address

from refiner.audit.record import Reveal, RoundRecord, TaskRecord
from refiner.audit.report import Check, short, unavailable
from refiner.chain import Manifest, Task
from refiner.chain.types import commitment
from refiner.storage import Handle, StorageError, Store
from refiner.wire.details import ManifestDetails, ProtocolError, load_details


class Unreadable(Exception):
    """Something the check needs cannot be obtained; the message says why."""


def conclude(name: str, problems: list[str], summary: str, unchecked: list[str] | None = None) -> Check:
    if problems:
        return Check(name, False, "; ".join(problems))
    if unchecked:
        return Check(name, None, "; ".join([summary, *unchecked]))
    return Check(name, True, summary)


def revealed_input(task: Task, reveal: Reveal) -> tuple[Manifest, bytes]:
    """The manifest and salt a reveal transaction sent: the event has the manifest but not the salt."""
    if reveal.event.tx_hash is None:
        raise Unreadable("the event does not name its transaction")
    tx = task.chain.w3.eth.get_transaction(reveal.event.tx_hash)  # type: ignore[arg-type]
    if tx.get("to") != task.address:
        raise Unreadable("revealed through another contract: the salt is not in the transaction's input")
    function, args = task.contract.decode_function_input(tx["input"])
    if function.fn_name != "revealManifest":
        raise Unreadable(f"the transaction calls {function.fn_name}, not revealManifest")
    if to_checksum_address(tx["from"]) != reveal.validator:
        raise Unreadable(f"the transaction was sent by {tx['from']}")
    return Manifest.from_tuple(args["manifest"]), bytes(args["salt"])


def check_commitments(rec: TaskRecord, rr: RoundRecord) -> Check:
    """Every reveal opens its validator's commitment: H(chain, task, round, validator, H(manifest), salt)."""
    task, committed, reveals = rec.task, rr.commitments, rr.reveals
    problems: list[str] = []
    unchecked: list[str] = []
    for rv in reveals:
        v = short(rv.validator)
        if rv.validator not in committed:
            problems.append(f"{v} revealed without committing")
            continue
        try:
            manifest, salt = revealed_input(task, rv)
        except Unreadable as exc:
            unchecked.append(f"{v}: {exc}")
            continue
        opened = commitment(task.chain.chain_id, task.address, rr.round, rv.validator, manifest.hash(), salt)
        if manifest != rv.manifest:
            problems.append(f"{v}'s transaction reveals another manifest than its event")
        elif opened != committed[rv.validator]:
            problems.append(f"{v}'s manifest and salt do not open its commitment")
        elif manifest.vote_key() != rv.vote_key:
            problems.append(f"{v}'s vote key is not its manifest's")
    revealed = {rv.validator for rv in reveals}
    silent = [short(v) for v in committed if v not in revealed]
    by_value: dict[bytes, list[str]] = defaultdict(list)
    for v, c in committed.items():
        by_value[c].append(short(v))
    summary = f"{len(reveals) - len(unchecked)} of {len(reveals)} reveals open their commitments"
    if silent:
        summary += f"; committed, never revealed: {', '.join(silent)}"
    absent = [short(m) for m in rec.committee if m not in committed]
    if absent and rr.info.finalized:
        summary += f"; never committed: {', '.join(absent)}"
    copies = [" = ".join(vs) for vs in by_value.values() if len(vs) > 1]
    if copies:
        summary += f"; identical (copied) commitments: {', '.join(copies)}"
    return conclude("commitments", problems, summary, unchecked)


def check_consensus(rec: TaskRecord, rr: RoundRecord) -> Check:
    """Re-tally the revealed vote keys by seat weight: a key with more than half the weight is consensus;
    the contract must have recorded it, and emitted RoundFinalized for it (NoConsensus otherwise)."""
    problems: list[str] = []
    tally: dict[bytes, int] = defaultdict(int)
    for rv in rr.reveals:
        if rv.validator not in rec.committee:
            problems.append(f"{short(rv.validator)} revealed without a seat")
        tally[rv.vote_key] += rec.committee.get(rv.validator, 0)
    total = rec.total_weight
    if total != sum(rec.committee.values()):
        problems.append(f"total weight {total} is not the seats' sum {sum(rec.committee.values())}")
    majority = next((k for k, w in tally.items() if 2 * w > total), None)
    info, finalized, none = rr.info, rr.of("RoundFinalized"), rr.of("NoConsensus")
    if majority is None:
        if info.consensus:
            problems.append(
                f"the contract recorded consensus {info.consensus_key.hex()[:8]}, no key holds > ½"
            )
        if finalized or len(none) != 1:
            problems.append("no majority, yet the round did not end with one NoConsensus")
        best = max(tally.values(), default=0)
        return conclude("consensus", problems, f"no manifest holds more than half ({best} of {total}): none")
    if info.consensus_key != majority:
        problems.append(
            f"contract's consensus key {info.consensus_key.hex()[:8]} ≠ tallied {majority.hex()[:8]}"
        )
    if none or len(finalized) != 1:
        problems.append("a majority, yet the round did not end with one RoundFinalized")
    elif bytes(finalized[0]["voteKey"]) != majority or int(finalized[0]["agreeingWeight"]) != tally[majority]:
        problems.append("RoundFinalized names another key or weight than the tally")
    stored = Manifest(
        info.results_root, info.total_contribution, info.payees, info.accuracy, info.model_digest
    )
    if stored.vote_key() != majority:
        problems.append("the results the contract stored are not the consensus manifest's")
    agreeing = sum(1 for rv in rr.reveals if rv.vote_key == majority)
    summary = f"{majority.hex()[:8]} holds {tally[majority]} of {total} weight ({agreeing} validators)"
    dissent = [short(rv.validator) for rv in rr.reveals if rv.vote_key != majority]
    if dissent:
        summary += f"; revealed another manifest: {', '.join(dissent)}"
    return conclude("consensus", problems, summary)


def _details_problem(details: ManifestDetails, rv: Reveal, task: str, round_: int) -> str | None:
    """Why `details` do not stand for `rv`'s manifest, or None if they rebuild it exactly."""
    if (details.task.lower(), details.round, details.validator.lower()) != (
        task.lower(),
        round_,
        rv.validator.lower(),
    ):
        return f"are for task {short(details.task)} round {details.round} by {short(details.validator)}"
    try:
        rebuilt = details.manifest(Handle.from_bytes(rv.manifest.details_handle))
    except (ValueError, KeyError, TypeError, StorageError) as exc:
        return f"are malformed ({exc})"
    if rebuilt == rv.manifest:
        return None
    names = ("results_root", "total_contribution", "payees", "accuracy", "model_digest", "aggregate_handle")
    differ = [n for n in names if getattr(rebuilt, n) != getattr(rv.manifest, n)]
    return f"do not rebuild the manifest's {', '.join(differ)}"


def check_details(rec: TaskRecord, rr: RoundRecord, store: Store) -> tuple[Check, ManifestDetails | None]:
    """Each agreeing validator's stored details rebuild its manifest, and list exactly the round's
    submitters with the samples they declared. Returns the first verified details (for payments)."""
    problems: list[str] = []
    missing: list[str] = []
    verified: list[ManifestDetails] = []
    for rv in rr.agreeing:
        try:
            details = load_details(store, rv.manifest, rv.salt)
        except StorageError as exc:  # absent here, or the store's copy is corrupt: not the validator's fault
            missing.append(f"{short(rv.validator)}'s details: {unavailable(exc)}")
            continue
        except ProtocolError as exc:
            problems.append(f"{short(rv.validator)}'s details: {exc}")
            continue
        why = _details_problem(details, rv, rec.task.address, rr.round)
        if why:
            problems.append(f"{short(rv.validator)}'s details {why}")
        else:
            verified.append(details)
    if not verified:
        return conclude(
            "details", problems, "no agreeing validator's details could be checked", missing
        ), None
    results = {to_checksum_address(r["worker"]): int(r["samples"]) for r in verified[0].results}
    submitted = rr.submissions
    for worker, samples in results.items():
        if worker not in submitted:
            problems.append(f"the details list {short(worker)}, who did not submit")
        elif samples != submitted[worker]:
            problems.append(
                f"the details give {short(worker)} {samples} samples, it submitted {submitted[worker]}"
            )
    problems += [f"the details omit submitter {short(w)}" for w in submitted if w not in results]
    summary = (
        f"{len(verified)} of {len(rr.agreeing)} agreeing details rebuild the manifest; "
        f"{len(results)} workers, as submitted"
    )
    # one verified copy is enough to check the round: the others' absence is only noted
    return conclude("details", problems, "; ".join([summary, *missing])), verified[0]
