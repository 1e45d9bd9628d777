"""Checks that need keys: a committee member's opens the round's global model, its validation set and
every worker's update, so the committee's evaluation can be re-run and compared with the consensus
manifest the contract paid by; the requester's opens every validator's aggregate."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from refiner.audit.checks import Unreadable, conclude
from refiner.audit.record import RoundRecord, TaskRecord
from refiner.audit.report import Check, short, unavailable
from refiner.chain import Manifest, ResultsTree, WorkerResult
from refiner.chain.earnings import with_earnings
from refiner.fl.measures import ContributionMeasure, measure_for
from refiner.fl.models import ModelValidationError, deserialize, model_digest
from refiner.fl.round_evaluation import evaluate_round
from refiner.sharing import Context, NotARecipient, SharingError, retrieve
from refiner.storage import Handle, InvalidHandle, ObjectTooLarge, StorageError, Store
from refiner.wire.datasets import MAX_DATASET_BYTES, dataset_from_bytes
from refiner.wire.details import ManifestDetails, ProtocolError, load_details
from refiner.wire.models import previous_model
from refiner.wire.reads import description_of, earned_before, model_of
from refiner.wire.spec import DescriptionError

#: What makes an update unusable for every validator alike (it rejects it: a bad handle, an oversized or
#: undecryptable file, not a model of the task), as opposed to an object the auditor's store lacks or holds
#: a corrupt copy of (any other StorageError), which a validator may well have read.
_REJECTED = (InvalidHandle, ObjectTooLarge, SharingError, ModelValidationError, ValueError)


def replay(
    rec: TaskRecord,
    rr: RoundRecord,
    store: Store,
    reader: LocalAccount,
    measure: ContributionMeasure | None,
) -> tuple[Manifest, ResultsTree]:
    """Re-run the validators' evaluation of round `rr` with a committee member's key (`reader`): the
    manifest (handles empty) and results tree an honest validator would have revealed. Raises Unreadable
    if it cannot be reproduced."""
    task, r = rec.task, rr.round
    requester = task.requester()
    started = rr.started
    if started is None:
        raise Unreadable("the round has no RoundStarted event")
    try:
        factory, spec = model_of(description_of(task))
    except (DescriptionError, ValueError, KeyError) as exc:
        raise Unreadable(f"the task's model cannot be built: {exc}") from None
    try:
        global_state = deserialize(
            retrieve(
                store,
                Handle.from_bytes(started["modelHandle"]),
                Handle.from_bytes(started["modelKeysHandle"]),
                Context(task.address, r, requester, "model"),
                reader,
                max_bytes=spec.max_bytes,
            ),
            spec,
        )
        validation = dataset_from_bytes(
            retrieve(
                store,
                Handle.from_bytes(started["validationHandle"]),
                Handle.from_bytes(started["validationKeysHandle"]),
                Context(task.address, r, requester, "validation"),
                reader,
                max_bytes=MAX_DATASET_BYTES,
            )
        )
    except NotARecipient:
        raise Unreadable(f"{short(reader.address)} is not a recipient of the round's inputs") from None
    except (*_REJECTED, StorageError) as exc:
        raise Unreadable(f"the round's model or validation set cannot be read: {exc}") from None
    updates = []
    rejected: list[WorkerResult] = []
    for e in rr.of("TrainingResultsSubmitted"):
        worker, samples = to_checksum_address(e["worker"]), int(e["samples"])
        try:
            data = retrieve(
                store,
                Handle.from_bytes(e["modelHandle"]),
                Handle.from_bytes(e["keysHandle"]),
                Context(task.address, r, worker, "update"),
                reader,
                max_bytes=spec.max_bytes,
            )
            updates.append((worker, deserialize(data, spec), samples))
        except NotARecipient:
            raise Unreadable(
                f"{short(reader.address)} is not a recipient of {short(worker)}'s update"
            ) from None
        except _REJECTED:
            rejected.append(WorkerResult(worker, False, samples, 0))  # as a validator does
        except StorageError as exc:
            raise Unreadable(f"{short(worker)}'s update: {unavailable(exc)}") from None
    try:
        chosen = measure or measure_for(description_of(task))  # the measure the task asks validators for
        previous = (
            previous_model(store, task, r, requester, reader, spec) if chosen.uses_previous_state else None
        )
        evaluation = evaluate_round(
            factory,
            global_state,
            updates,
            validation,
            rec.config.epsilon,
            measure=chosen,
            previous_state=previous,
        )
    except ValueError as exc:  # e.g. an empty validation set: no validator could have evaluated either
        raise Unreadable(f"the evaluation does not run: {exc}") from None
    try:
        before = earned_before(store, task, r)
    except ProtocolError as exc:
        raise Unreadable(f"the earnings of earlier rounds cannot be read: {exc}") from None
    results = [WorkerResult(*x) for x in evaluation.fixed_results()] + rejected
    tree = ResultsTree(with_earnings(results, rec.config.worker_reward, before))
    return tree.manifest(evaluation.accuracy_ppm, evaluation.digest), tree


def _worker_differences(mine: ResultsTree, theirs: ManifestDetails | None) -> list[str]:
    if theirs is None:
        return []
    claimed = {r.worker.lower(): r for r in theirs.tree().results}
    out = []
    for r in mine.results:
        c = claimed.get(r.worker.lower())
        if c is None or (c.accepted, c.contribution) != (r.accepted, r.contribution):
            was = (
                "absent" if c is None else f"{'accepted' if c.accepted else 'rejected'} {c.contribution} ppm"
            )
            now = f"{'accepted' if r.accepted else 'rejected'} {r.contribution} ppm"
            out.append(f"{short(r.worker)}: manifest {was}, re-run {now}")
    return out


def check_evaluation(
    rec: TaskRecord,
    rr: RoundRecord,
    store: Store,
    evaluator: LocalAccount,
    measure: ContributionMeasure | None,
    details: ManifestDetails | None,
) -> Check:
    """The consensus manifest is what an honest validator computes from the round's inputs."""
    if not rr.agreeing:
        return Check("evaluation", None, "nobody revealed the consensus manifest")
    try:
        mine, tree = replay(rec, rr, store, evaluator, measure)
    except Unreadable as exc:
        return Check("evaluation", None, f"cannot re-run the evaluation: {exc}")
    theirs = rr.agreeing[0].manifest
    names = ("results_root", "total_contribution", "payees", "accuracy", "model_digest")
    differ = [n for n in names if getattr(mine, n) != getattr(theirs, n)]
    if not differ:
        return Check(
            "evaluation",
            True,
            f"re-run matches: accuracy {mine.accuracy / 1e4:.2f} %, {mine.payees} of {len(tree.results)} "
            f"workers paid, model {mine.model_digest.hex()[:8]}",
        )
    problems = [f"re-run differs in {', '.join(differ)}", *_worker_differences(tree, details)]
    honest = [short(rv.validator) for rv in rr.reveals if rv.vote_key == mine.vote_key()]
    if honest:
        problems.append(f"the re-run matches the reveal of {', '.join(honest)}")
    return Check("evaluation", False, "; ".join(problems))


def check_aggregate(rec: TaskRecord, rr: RoundRecord, store: Store, requester: LocalAccount) -> Check:
    """Every agreeing validator's encrypted aggregate opens for the requester and has the consensus digest
    (a paid validator whose model does not is a failure; one the store lacks is only noted)."""
    task = rec.task
    try:
        _, spec = model_of(description_of(task))
    except (DescriptionError, ValueError, KeyError) as exc:
        return Check("aggregate", None, f"the task's model cannot be built: {exc}")
    good: list[str] = []
    bad: list[str] = []
    missing: list[str] = []
    for rv in rr.agreeing:
        v = short(rv.validator)
        try:
            details = load_details(store, rv.manifest, rv.salt)
            state = deserialize(
                retrieve(
                    store,
                    Handle.from_bytes(rv.manifest.aggregate_handle),
                    Handle.parse(details.aggregate_keys_handle),
                    Context(task.address, rr.round, rv.validator, "aggregate"),
                    requester,
                    max_bytes=spec.max_bytes,
                ),
                spec,
            )
        except (StorageError, ProtocolError) as exc:  # absent, corrupt here, or details unreadable
            missing.append(f"{v}: {unavailable(exc) if isinstance(exc, StorageError) else exc}")
            continue
        except (SharingError, ModelValidationError, ValueError) as exc:
            bad.append(f"{v}'s aggregate does not open as a model: {exc}")
            continue
        if model_digest(state) != rv.manifest.model_digest:
            bad.append(f"{v}'s aggregate has digest {model_digest(state).hex()[:8]}, not the manifest's")
        else:
            good.append(v)
    if bad or good:
        summary = f"{len(good)} of {len(rr.agreeing)} aggregates decrypt to the consensus model"
        return conclude("aggregate", bad, "; ".join([summary, *missing]))
    return conclude("aggregate", [], "no agreeing validator's aggregate is available", missing)
