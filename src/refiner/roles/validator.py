"""The validator (paper 2.1, 2.3.6): evaluates every update, aggregates the qualified ones, measures
contributions, and commit-reveals a manifest.

This is the honest validator only; the attacks of the adversary study are subclasses of it in
:mod:`refiner.adversary.validators` (``ValidatorBehaviour`` names them).

Untrusted files (workers' updates and key envelopes) never crash an evaluation: an update that cannot be
opened or validated is rejected with the reason in ``Evaluated.rejected_files``. One that cannot be fetched
is retried until a cut-off in chain time common to the whole committee (`fetch_cutoff`): before it,
`evaluate` raises `UpdatesPending` instead of deciding, so that a worker serving its file to some members
and not others (or too late for some) cannot split the committee's verdicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from refiner.chain import ContractRevert, Manifest, ResultsTree, Status, Task, TxResult, WorkerResult
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import Ticket, draw
from refiner.chain.earnings import with_earnings
from refiner.fl.data import Dataset
from refiner.fl.measures import ContributionMeasure, measure_for
from refiner.fl.models import ModelFn, ModelSpec, ModelValidationError, State, serialize
from refiner.fl.round_evaluation import RoundEvaluation, WorkerEvaluation, evaluate_round
from refiner.roles.participant import Participant
from refiner.sharing import (
    Context,
    SharingError,
    retrieve,
    share,
)
from refiner.sortition import VrfKey
from refiner.storage import (
    Handle,
    StorageError,
    transient,
)
from refiner.wire.datasets import MAX_DATASET_BYTES, dataset_from_bytes
from refiner.wire.details import ManifestDetails, ProtocolError, load_details, store_details
from refiner.wire.memos import open_memo, salt_for, seal_memo
from refiner.wire.models import open_model, previous_model
from refiner.wire.reads import description_of, earned_before, model_of, round_inputs

#: The contribution (ppm) a colluding ring writes for each worker it pays against the evaluation.
#: Most samples a submission may claim. FedAvg weighs updates by the claimed counts, and torch cannot
#: take a weight sum of 2^64 or more (OverflowError): one worker claiming 2^64 − 1 (a valid uint64 on
#: chain) would stop every validator's evaluation. 2^40 is far above any real shard and leaves room for
#: 2^23 such workers below 2^64.
MAX_SAMPLES = 1 << 40
#: Longest reason kept for an update that could not be read.
MAX_REASON = 300
#: Longest fetch window (s): the committee retries an update it cannot fetch for half the EVALUATING
#: phase (the other half is for evaluating and committing), but never longer than this, so that a worker
#: that never uploads its file delays the round by at most 10 minutes.
MAX_FETCH_WINDOW = 600


class ValidatorBehaviour(StrEnum):
    HONEST = "honest"
    COPYCAT = "copycat"  # copies another validator's commitment instead of evaluating
    NON_REVEALER = "non-revealer"  # evaluates and commits, never reveals
    RANDOM = "random"  # commits and reveals a made-up manifest
    COLLUDER = "colluder"  # reveals the ring's forged manifest: every rejected worker paid
    THIEF = "thief"  # reveals another validator's manifest and salt (refused)
    LAZY = "lazy"  # copies another member's details from the store instead of evaluating
    POISONER = "poisoner"  # reveals the consensus vote with malformed details
    BAD_AGGREGATE = "bad-aggregate"  # reveals the consensus vote with an aggregate that does not open


class UnreadableUpdate(ValueError):
    """A worker's submission could not be fetched, opened or validated (the reason is the message)."""


class UpdatesPending(ProtocolError):
    """Some submitted updates cannot be fetched yet and the fetch cut-off has not passed: evaluate again
    later, at the latest once the chain's time reaches `cutoff`."""

    def __init__(self, round_: int, missing: dict[str, str], cutoff: int) -> None:
        self.round, self.missing, self.cutoff = round_, missing, cutoff
        worker, reason = next(iter(missing.items()))
        super().__init__(
            f"round {round_}: {len(missing)} update(s) cannot be fetched yet (e.g. {worker}'s: "
            f"{_short(reason)}); waited for until the fetch cut-off at chain time {cutoff}, then rejected"
        )


def fetch_cutoff(task: Task) -> int:
    """The chain time until which every honest validator retries an update it cannot fetch: the start of
    the EVALUATING phase (its deadline less its duration) plus the fetch window, half the phase and at
    most `MAX_FETCH_WINDOW`. Every validator reads the same figures from the contract. Outside the
    EVALUATING phase nothing waits (0)."""
    if task.status() is not Status.EVALUATING:
        return 0
    evaluation = task.config().durations.evaluation
    return task.deadline() - evaluation + min(evaluation // 2, MAX_FETCH_WINDOW)


def unavailable(exc: Exception) -> bool:
    """Whether failing to read an update may be this validator's luck rather than the file's own fault:
    not found (yet), a local storage fault or a corrupt local copy (as the audit counts them). A malformed
    handle, a file over the size limit, bad encryption or a bad model file is the same for every
    validator: rejected at once."""
    return isinstance(exc, StorageError) and transient(exc)


def latest_block_time(task: Task) -> int:
    return task.chain.now()


@dataclass(frozen=True)
class EvaluationJob:
    """What `evaluate_round` takes in one validator's round, read from the chain and the store."""

    round: int
    model_fn: ModelFn
    global_state: State
    updates: list[tuple[str, State, int]]
    validation: Dataset
    epsilon: float
    measure: ContributionMeasure
    previous_state: State | None
    rejected: dict[str, str]  # worker → why its update could not even be evaluated

    def arguments(self) -> tuple[Any, ...]:
        """`run_evaluation`'s arguments."""
        return (
            self.model_fn,
            self.global_state,
            self.updates,
            self.validation,
            self.epsilon,
            self.measure,
            self.previous_state,
        )

    def run(self) -> RoundEvaluation:
        return run_evaluation(*self.arguments())


def run_evaluation(
    model_fn: ModelFn,
    global_state: State,
    updates: Sequence[tuple[str, State, int]],
    validation: Dataset,
    epsilon: float,
    measure: ContributionMeasure,
    previous_state: State | None,
) -> RoundEvaluation:
    """`evaluate_round` with positional arguments only (what an executor's job is)."""
    return evaluate_round(
        model_fn, global_state, updates, validation, epsilon, measure=measure, previous_state=previous_state
    )


@dataclass(frozen=True)
class Evaluated:
    """A validator's work for one round: what it will commit to and reveal."""

    round: int
    manifest: Manifest
    details: ManifestDetails
    evaluation: RoundEvaluation | None
    rejected_files: dict[str, str]  # worker → why its update could not even be evaluated


@dataclass
class Validator(Participant):
    #: What this validator does (honest here; the attacks are subclasses in refiner.adversary).
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.HONEST
    #: Whether `evaluate` scores the round's updates (`evaluation_job`), so that it can be done ahead
    evaluates_updates: ClassVar[bool] = True
    #: How contributions are measured; by default what the task's description asks for.
    measure: ContributionMeasure | None = None
    #: The VRF key registered for sortition (default: derived from the account key).
    vrf_key: VrfKey | None = None
    #: Chain time now, to compare with `fetch_cutoff` (default: the latest block's timestamp).
    clock: Callable[[Task], int] = latest_block_time
    #: Updates fetched (or found invalid) in an evaluation that is waiting for others, by (task, round).
    _fetched: dict[tuple[str, int], dict[str, tuple[State, int] | str]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: Workers' earnings through each consensus round read so far (wire.reads.earned_before), by (task, round)
    _earnings: dict[tuple[str, int], dict[str, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    #: An evaluation computed ahead (in parallel with other members'), by (task, round)
    _evaluated_ahead: dict[tuple[str, int], tuple[EvaluationJob, RoundEvaluation]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def evaluates(self) -> bool:
        """Whether this validator evaluates the round itself before it commits (an adversary that
        copies another member's commitment commits once someone else has)."""
        return True

    @property
    def reveals(self) -> bool:
        """Whether this validator reveals what it committed."""
        return True

    @property
    def sortition_key(self) -> VrfKey:
        return self.vrf_key or vrf_key_for(self.account)

    def register(self, stake: int) -> TxResult:
        return self.registry.register_validator(self.account, stake, self.sortition_key)

    def sortition(self, task: Task) -> Ticket:
        """Evaluate this validator's sortition for `task` privately (paper 2.3.3)."""
        return draw(task, self.registry, self.address, self.sortition_key, sender=self.account)

    def claim_seat(self, task: Task) -> TxResult | None:
        """Claim the committee seats sortition gave this validator, if any (None when it won none)."""
        ticket = self.sortition(task)
        if ticket.seats == 0:
            return None
        return task.claim_seat(self.account, ticket.proof, ticket.seats)

    def evaluate(self, task: Task) -> Evaluated:
        """Fetch the validation set and every submitted update; score, aggregate, measure contributions
        and share the aggregate with the requester (paper 2.3.6)."""
        ahead = self._evaluated_ahead.pop((task.address, task.current_round()), None)
        if ahead is not None:
            return self._conclude(task, *ahead)
        job = self.evaluation_job(task)
        return self._conclude(task, job, job.run())

    def evaluation_job(self, task: Task) -> EvaluationJob:
        """What this round's evaluation takes, fetched and opened: the global model, the validation set
        and every update (`UpdatesPending` while some cannot be fetched yet, as `evaluate`)."""
        round_ = task.current_round()
        description = description_of(task)
        factory, spec = model_of(description, self.models)
        handles = round_inputs(task, round_)
        requester = task.requester()
        global_state = open_model(
            self.store,
            handles["modelHandle"],
            handles["modelKeysHandle"],
            Context(task.address, round_, requester, "model"),
            self.account,
            spec,
        )
        validation = dataset_from_bytes(
            retrieve(
                self.store,
                handles["validationHandle"],
                handles["validationKeysHandle"],
                Context(task.address, round_, requester, "validation"),
                self.account,
                max_bytes=MAX_DATASET_BYTES,
            )
        )
        updates, rejected = self._fetch_updates(task, round_, spec)
        measure = self.measure or measure_for(description)
        previous = (
            previous_model(self.store, task, round_, requester, self.account, spec)
            if measure.uses_previous_state
            else None
        )
        return EvaluationJob(
            round_,
            factory,
            global_state,
            updates,
            validation,
            task.config().epsilon,
            measure,
            previous,
            rejected,
        )

    def evaluated_ahead(self, task: Task, job: EvaluationJob, evaluation: RoundEvaluation) -> None:
        """Keep `job`'s evaluation, computed ahead (in parallel with other members'), for `evaluate`."""
        round_ = task.current_round()
        kept = {k: v for k, v in self._evaluated_ahead.items() if k[0] != task.address}
        self._evaluated_ahead = {**kept, (task.address, round_): (job, evaluation)}

    def _conclude(self, task: Task, job: EvaluationJob, evaluation: RoundEvaluation) -> Evaluated:
        """The manifest and details of an evaluated round; the aggregate shared with the requester."""
        round_, rejected = job.round, job.rejected
        requester = task.requester()
        description = description_of(task)
        results = [WorkerResult(w, accepted, n, c) for w, accepted, n, c in evaluation.fixed_results()]
        results += [WorkerResult(w, False, self._samples(task, round_, w), 0) for w in rejected]
        results = self.with_earnings(task, round_, results)
        tree = ResultsTree(results)
        aggregate_h, aggregate_k = share(
            self.store,
            serialize(evaluation.aggregate),
            Context(task.address, round_, self.address, "aggregate"),
            {requester: description.requester_key(requester)},
        )
        losses = {u.worker: u.loss_ppm for u in evaluation.workers}
        screens = {u.worker: u for u in evaluation.workers if u.trust is not None or u.screen is not None}
        details = ManifestDetails(
            task=task.address,
            round=round_,
            validator=self.address,
            results=[
                {
                    "worker": r.worker,
                    "accepted": r.accepted,
                    "samples": r.samples,
                    "contribution": r.contribution,
                    "earned": r.earned,
                    "loss": losses.get(r.worker),
                    **_screen_fields(screens.get(r.worker)),
                }
                for r in sorted(results, key=lambda r: r.worker.lower())
            ],
            accuracy=evaluation.accuracy_ppm,
            loss=evaluation.loss_ppm,
            model_digest=evaluation.digest.hex(),
            aggregate_handle=str(aggregate_h),
            aggregate_keys_handle=str(aggregate_k),
        )
        details_handle = self._put_details(task.address, round_, details.to_bytes())
        manifest = details.manifest(details_handle)
        assert manifest.results_root == tree.root
        return Evaluated(round_, manifest, details, evaluation, rejected)

    def _fetch_updates(
        self, task: Task, round_: int, spec: ModelSpec
    ) -> tuple[list[tuple[str, State, int]], dict[str, str]]:
        """Every submitted update, opened, and the reason each rejected one is. An update that cannot be
        fetched is tried again at each call until the fetch cut-off; before it, `UpdatesPending` is raised
        (what was fetched is kept for the next call). The first call at or after the cut-off (read before
        fetching, so its attempts start after the cut-off) is the last: what is still missing then is
        rejected as unavailable."""
        final = self.clock(task) >= (cutoff := fetch_cutoff(task))
        for stale in [key for key in self._fetched if key[0] == task.address and key[1] != round_]:
            del self._fetched[stale]
        fetched = self._fetched.setdefault((task.address, round_), {})
        missing: dict[str, str] = {}
        submitted = task.round_events("TrainingResultsSubmitted", round_)
        for e in submitted:
            worker, samples = e["worker"], int(e["samples"])
            if worker in fetched:
                continue
            try:
                if samples > MAX_SAMPLES:
                    raise UnreadableUpdate(f"claims {samples} samples, more than the {MAX_SAMPLES} accepted")
                state = open_model(
                    self.store,
                    Handle.from_bytes(e["modelHandle"]),
                    Handle.from_bytes(e["keysHandle"]),
                    Context(task.address, round_, worker, "update"),
                    self.account,
                    spec,
                )
                fetched[worker] = (state, samples)
            except (StorageError, SharingError, ModelValidationError, ValueError) as exc:
                if unavailable(exc) and not final:
                    missing[worker] = str(exc)
                elif unavailable(exc):
                    fetched[worker] = _short(f"unavailable by the fetch cut-off (chain time {cutoff}): {exc}")
                else:
                    fetched[worker] = _short(str(exc))  # a worker chooses what goes in it: keep it short
        if missing:
            raise UpdatesPending(round_, missing, cutoff)
        del self._fetched[(task.address, round_)]
        updates: list[tuple[str, State, int]] = []
        rejected: dict[str, str] = {}
        for e in submitted:  # in submission order, whenever fetched: the aggregate's float sums depend on it
            got = fetched[e["worker"]]
            if isinstance(got, str):
                rejected[e["worker"]] = got
            else:
                updates.append((e["worker"], *got))
        return updates, rejected

    def _put_details(self, task: str, round_: int, data: bytes) -> Handle:
        """Store this validator's details of a round, sealed under its commitment salt until it reveals
        (another member reading them before committing could copy the vote); returns their handle."""
        return store_details(self.store, data, salt_for(self.account, task, round_))

    def recover(self, task: Task, round_: int) -> Evaluated | None:
        """Rebuild the manifest this validator committed to in `round_` from its commitment's memo and
        the stored details (after a restart); None if it has not committed or the details are gone."""
        mine = [e for e in task.round_events("ManifestCommitted", round_) if e["validator"] == self.address]
        if not mine:
            return None
        salt = salt_for(self.account, task.address, round_)
        try:
            handle = open_memo(self.account, task.address, round_, bytes(mine[-1]["memo"]))
            details = load_details(self.store, handle, salt)
            manifest = details.manifest(handle)
        except (StorageError, ProtocolError, ValueError):
            return None
        if task.commitment_for(self.address, round_, manifest, salt) != bytes(mine[-1]["commitment"]):
            return None
        return Evaluated(round_, manifest, details, None, {})

    def with_earnings(self, task: Task, round_: int, results: Sequence[WorkerResult]) -> list[WorkerResult]:
        """`results` with each worker's earnings in the task through `round_` (its leaves' `earned`),
        from the consensus details of the earlier rounds."""
        before = earned_before(self.store, task, round_, self._earnings)
        return with_earnings(results, task.config().worker_reward, before)

    @staticmethod
    def _samples(task: Task, round_: int, worker: str) -> int:
        return task.submitted_samples(round_, worker)

    def commit_manifest(self, task: Task, work: Evaluated | None) -> TxResult:
        """Commit H(task, round, me, H(manifest), salt)."""
        round_ = task.current_round()
        if work is None:
            raise ProtocolError("evaluate the round before committing")
        salt = salt_for(self.account, task.address, round_)
        memo = seal_memo(self.account, task.address, round_, Handle.from_bytes(work.manifest.details_handle))
        return task.commit_manifest(
            self.account, task.commitment_for(self.address, round_, work.manifest, salt), memo
        )

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        """Reveal the committed manifest and salt (nothing to reveal without `work`)."""
        if work is None:
            return None
        salt = salt_for(self.account, task.address, work.round)
        return task.reveal_manifest(self.account, work.manifest, salt)

    def claim_reward(self, task: Task, round_: int) -> int:
        """Claim the validator rewards of every finalized round not paid yet (`round_` and earlier: those
        whose consensus this validator revealed); returns wei received, 0 when none is due."""
        try:
            res = task.claim_validator_reward(self.account)
        except ContractRevert as exc:
            if exc.error in ("NoReward", "AlreadyClaimed"):
                return 0
            raise
        return int(res.event("RewardClaimed")["amount"])


def _screen_fields(w: WorkerEvaluation | None) -> dict[str, int | str | None]:
    """A screening measure's per-worker fields of the manifest details (none for the other measures)."""
    return {} if w is None else {"trust": w.trust_ppm, "screen": w.screen}


def _short(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
