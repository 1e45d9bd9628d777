"""The validator (paper 2.1, 2.3.6): evaluates every update, aggregates the qualified ones, measures
contributions, and commit-reveals a manifest.

Besides the honest validator, the behaviours of the adversary study (each a committee member's own
choice; what the contract makes of it is in ``tests/roles/test_validator_attacks.py``):

* ``copycat``: commits a copy of another member's commitment without evaluating. The commitment binds its
  author's address, so the copycat can never reveal it.
* ``non-revealer``: evaluates and commits, never reveals; the round waits for the reveal deadline.
* ``random``: makes up a manifest (random verdicts, contributions, accuracy and model digest), stores
  details that match it, commits and reveals it.
* ``colluder``: evaluates honestly, then commits and reveals the ring's forged manifest: every worker the
  evaluation rejected is accepted with a contribution of ``COLLUSION_CONTRIBUTION``. The forgery is a
  deterministic function of the honest evaluation, so every colluder reveals the same vote.
* ``thief``: does not evaluate; commits a copy of another member's commitment (or, when nobody has
  committed yet, one it cannot open either) and at reveal time submits another member's manifest and
  salt, read from that member's reveal transaction (as it would from the mempool). The contract refuses
  it: the commitment binds the sender, so neither the copied commitment nor its own opens for it.
* ``lazy``: does not evaluate; before committing it lists the (shared directory) store and copies the
  first other member's details of the round it can read, as its own vote. Details are stored encrypted
  under a key only their author knows before the reveal, so it finds none.
* ``poisoner``: evaluates honestly and reveals the consensus vote, but with details that parse and are
  malformed (a result that is not a record, a key handle that is not a handle). The vote key does not
  cover the details, so the contract cannot refuse them: readers skip them.
* ``bad-aggregate``: evaluates honestly and reveals the consensus vote with well-formed details whose
  aggregate is garbage nobody can open: the requester takes another agreeing member's aggregate.

Untrusted files (workers' updates and key envelopes) never crash an evaluation: an update that cannot be
opened or validated is rejected with the reason in ``Evaluated.rejected_files``. One that cannot be fetched
is retried until a cut-off in chain time common to the whole committee (`fetch_cutoff`): before it,
`evaluate` raises `UpdatesPending` instead of deciding, so that a worker serving its file to some members
and not others (or too late for some) cannot split the committee's verdicts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils import keccak

from refiner.chain import ContractRevert, Manifest, ResultsTree, Status, Task, TxResult, WorkerResult
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import Ticket, draw
from refiner.fl.measures import ContributionMeasure, measure_for
from refiner.fl.models import ModelSpec, ModelValidationError, State, deserialize, serialize
from refiner.fl.round_evaluation import RoundEvaluation, WorkerEvaluation, evaluate_round
from refiner.roles.participant import (
    MAX_DETAILS,
    ManifestDetails,
    Participant,
    ProtocolError,
    description_of,
    load_details,
    model_of,
    open_memo,
    round_inputs,
    salt_for,
    seal_memo,
    store_details,
)
from refiner.roles.wire import MAX_DATASET_BYTES, dataset_from_bytes
from refiner.sharing import (
    Context,
    SharingError,
    retrieve,
    share,
)
from refiner.sortition import VrfKey
from refiner.storage import (
    DirectoryStore,
    Handle,
    StorageError,
    Store,
    transient,
)
from refiner.units import ONE

#: The contribution (ppm) a colluding ring writes for each worker it pays against the evaluation.
COLLUSION_CONTRIBUTION = 100_000
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


def open_model(
    store: Store, model: Handle, keys: Handle, context: Context, account: LocalAccount, spec: ModelSpec
) -> State:
    """Fetch, decrypt and validate a shared model as `account`; a pickle gets a message saying so."""
    data = retrieve(store, model, keys, context, account, max_bytes=spec.max_bytes)
    try:
        return deserialize(data, spec)
    except ModelValidationError as exc:
        if data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a bare pickle stream
            raise ModelValidationError(
                f"the model file looks like a pickle (torch.save), not safetensors; never unpickled ({exc})"
            ) from None
        raise


def previous_model(
    store: Store, task: Task, round_: int, requester: str, account: LocalAccount, spec: ModelSpec
) -> State | None:
    """The model round ``round_ − 1`` started from, which the task's committee (fixed for the task) was
    sent then; None in round 1 or when it cannot be opened (the screen then skips its stale test)."""
    if round_ <= 1:
        return None
    try:
        handles = round_inputs(task, round_ - 1)
        context = Context(task.address, round_ - 1, requester, "model")
        return open_model(store, handles["modelHandle"], handles["modelKeysHandle"], context, account, spec)
    except (ProtocolError, StorageError, SharingError, ModelValidationError, ValueError):
        return None


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
    behaviour: ValidatorBehaviour = ValidatorBehaviour.HONEST
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

    @property
    def evaluates(self) -> bool:
        """Whether this validator evaluates the round itself before it commits (a copycat copies
        another member's commitment instead, so it commits once someone else has)."""
        return self.behaviour is not ValidatorBehaviour.COPYCAT

    @property
    def reveals(self) -> bool:
        """Whether this validator reveals what it committed (a non-revealer stays silent; a copycat
        holds a commitment it cannot open)."""
        return self.behaviour not in (ValidatorBehaviour.NON_REVEALER, ValidatorBehaviour.COPYCAT)

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
        and share the aggregate with the requester (paper 2.3.6). A `random` validator makes its manifest
        up instead; a `colluder` evaluates, then forges (see the module's description)."""
        if self.behaviour is ValidatorBehaviour.RANDOM:
            return self._made_up(task)
        if self.behaviour is ValidatorBehaviour.LAZY:
            return self._copied(task)
        work = self._evaluate(task)
        if self.behaviour is ValidatorBehaviour.COLLUDER:
            return self._forged(work)
        if self.behaviour in (ValidatorBehaviour.POISONER, ValidatorBehaviour.BAD_AGGREGATE):
            return self._poisoned(task, work)
        return work

    def _evaluate(self, task: Task) -> Evaluated:
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
        evaluation = evaluate_round(
            factory,
            global_state,
            updates,
            validation,
            task.config().epsilon,
            measure=measure,
            previous_state=(
                previous_model(self.store, task, round_, requester, self.account, spec)
                if measure.uses_previous_state
                else None
            ),
        )
        results = [WorkerResult(w, accepted, n, c) for w, accepted, n, c in evaluation.fixed_results()]
        results += [WorkerResult(w, False, self._samples(task, round_, w), 0) for w in rejected]
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

    def _made_up(self, task: Task) -> Evaluated:
        """A random validator's manifest: random verdicts and contributions for the round's submissions,
        a random accuracy, loss and model digest, and stored details that rebuild it."""
        round_ = task.current_round()
        rng = random.Random(keccak(b"refiner-random" + bytes(self.account.key) + _task_round(task, round_)))
        results = [
            {
                "worker": e["worker"],
                "accepted": rng.random() < 0.5,
                "samples": int(e["samples"]),
                "contribution": rng.randrange(-ONE, ONE),
                "loss": rng.randrange(10 * ONE),
            }
            for e in sorted(
                task.round_events("TrainingResultsSubmitted", round_), key=lambda e: str(e["worker"]).lower()
            )
        ]
        details = ManifestDetails(
            task=task.address,
            round=round_,
            validator=self.address,
            results=results,
            accuracy=rng.randrange(ONE + 1),
            loss=rng.randrange(10 * ONE),
            model_digest=rng.randbytes(32).hex(),
            aggregate_handle=str(Handle.of(rng.randbytes(64))),  # names nothing stored
            aggregate_keys_handle=str(Handle.of(rng.randbytes(64))),
        )
        manifest = details.manifest(self._put_details(task.address, round_, details.to_bytes()))
        return Evaluated(round_, manifest, details, None, {})

    def _forged(self, work: Evaluated) -> Evaluated:
        """The ring's manifest: the honest evaluation with every rejected worker accepted and credited
        COLLUSION_CONTRIBUTION (the aggregate and its digest are left as evaluated). Unchanged when the
        evaluation rejected nobody: the ring then has no one to pay."""
        results = [
            r if r["accepted"] else {**r, "accepted": True, "contribution": COLLUSION_CONTRIBUTION}
            for r in work.details.results
        ]
        if results == work.details.results:
            return work
        details = replace(work.details, results=results)
        manifest = details.manifest(self._put_details(work.details.task, work.round, details.to_bytes()))
        return Evaluated(work.round, manifest, details, work.evaluation, work.rejected_files)

    def _copied(self, task: Task) -> Evaluated:
        """A lazy member's manifest: the first other member's details of this round that it can read in
        the store's directory, signed as its own."""
        round_ = task.current_round()
        if not isinstance(self.store, DirectoryStore):
            raise ProtocolError("a lazy validator lists a directory store")
        for path in sorted(self.store.root.glob("*/*")):
            if path.stat().st_size > MAX_DETAILS:
                continue
            try:
                found = ManifestDetails.from_bytes(path.read_bytes())
            except (ProtocolError, ValueError, TypeError, KeyError):
                continue
            if (found.task, found.round) == (task.address, round_) and found.validator != self.address:
                details = replace(found, validator=self.address)
                manifest = details.manifest(self._put_details(task.address, round_, details.to_bytes()))
                return Evaluated(round_, manifest, details, None, {})
        raise ProtocolError(f"a lazy validator found no readable details of round {round_} to copy")

    def _poisoned(self, task: Task, work: Evaluated) -> Evaluated:
        """The honest vote with spoiled files: a poisoner's details parse but are malformed; a
        bad-aggregate member's details are well formed and name an aggregate that is garbage."""
        if self.behaviour is ValidatorBehaviour.POISONER:
            stored = json.loads(work.details.to_bytes())
            raw = json.dumps({**stored, "results": [1], "aggregate_keys_handle": 5}).encode()
            spoiled = self._put_details(task.address, work.round, raw)
            return replace(work, manifest=replace(work.manifest, details_handle=bytes(spoiled)))
        garbage = self.store.put(keccak(b"refiner-bad-aggregate" + bytes(self.account.key)) * 64)
        details = replace(work.details, aggregate_handle=str(garbage))
        manifest = details.manifest(self._put_details(task.address, work.round, details.to_bytes()))
        return replace(work, manifest=manifest, details=details)

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

    @staticmethod
    def _samples(task: Task, round_: int, worker: str) -> int:
        return task.submission_of(round_, worker)[0]

    def commit_manifest(self, task: Task, work: Evaluated | None) -> TxResult:
        """Commit H(task, round, me, H(manifest), salt). A copycat or a thief commits someone else's
        commitment (a thief with nobody to copy yet, a commitment it cannot open either)."""
        round_ = task.current_round()
        if self.behaviour in (ValidatorBehaviour.COPYCAT, ValidatorBehaviour.THIEF):
            others = [
                e for e in task.round_events("ManifestCommitted", round_) if e["validator"] != self.address
            ]
            if others:
                return task.commit_manifest(self.account, others[0]["commitment"])
            if self.behaviour is ValidatorBehaviour.COPYCAT:
                raise ProtocolError("a copycat validator needs someone else's commitment to copy")
            made_up = keccak(b"refiner-thief" + bytes(self.account.key) + _task_round(task, round_))
            return task.commit_manifest(self.account, made_up)
        if work is None:
            raise ProtocolError("evaluate the round before committing")
        salt = salt_for(self.account, task.address, round_)
        memo = seal_memo(self.account, task.address, round_, Handle.from_bytes(work.manifest.details_handle))
        return task.commit_manifest(
            self.account, task.commitment_for(self.address, round_, work.manifest, salt), memo
        )

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        """Reveal the committed manifest and salt; a non-revealer stays silent. A copycat has nothing it
        can reveal: the commitment it copied binds its author's address. A thief submits another
        validator's revealed manifest and salt, and the contract refuses it (`ContractRevert`
        CommitmentMismatch); with no reveal to copy yet it raises ProtocolError."""
        if self.behaviour is ValidatorBehaviour.THIEF:
            manifest, salt = self.stolen_reveal(task, task.current_round())
            return task.reveal_manifest(self.account, manifest, salt)
        if self.behaviour is ValidatorBehaviour.NON_REVEALER or work is None:
            return None
        salt = salt_for(self.account, task.address, work.round)
        return task.reveal_manifest(self.account, work.manifest, salt)

    def stolen_reveal(self, task: Task, round_: int) -> tuple[Manifest, bytes]:
        """The manifest and salt of another validator's reveal in `round_`, decoded from its transaction's
        input (public once sent: in the mempool, then in its block)."""
        for e in task.round_events("ManifestRevealed", round_):
            if e["validator"] == self.address or e.tx_hash is None:
                continue
            tx = task.chain.w3.eth.get_transaction(HexStr(e.tx_hash))
            _, args = task.contract.decode_function_input(tx["input"])
            return Manifest.from_tuple(args["manifest"]), bytes(args["salt"])
        raise ProtocolError(f"no other validator has revealed in round {round_}: nothing to steal yet")

    def claim_reward(self, task: Task, round_: int) -> int:
        """Claim this round's validator reward if this validator agreed with the consensus."""
        try:
            res = task.claim_validator_reward(self.account, round_)
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


def _task_round(task: Task, round_: int) -> bytes:
    return bytes.fromhex(task.address[2:]) + round_.to_bytes(4, "big")
