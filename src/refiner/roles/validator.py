"""The validator (paper 2.1, 2.3.6): evaluates every update, aggregates the qualified ones, measures
contributions, and commit-reveals a manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from refiner.chain import ContractRevert, Manifest, ResultsTree, Task, TxResult, WorkerResult
from refiner.chain.accounts import vrf_key_for
from refiner.chain.committee import Ticket, draw
from refiner.fl.contribution import ContributionMeasure, LeaveOneOut
from refiner.fl.models import ModelValidationError, State, deserialize, serialize
from refiner.fl.round_evaluation import RoundEvaluation, evaluate_round
from refiner.roles.participant import (
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
)
from refiner.roles.wire import dataset_from_bytes
from refiner.sharing import Context, SharingError, retrieve, share
from refiner.sortition import VrfKey
from refiner.storage import Handle, StorageError


class ValidatorBehaviour(StrEnum):
    HONEST = "honest"
    COPYCAT = "copycat"  # copies another validator's commitment instead of evaluating
    NON_REVEALER = "non-revealer"  # evaluates and commits, never reveals


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
    measure: ContributionMeasure = field(default_factory=LeaveOneOut)
    #: The VRF key registered for sortition (default: derived from the account key).
    vrf_key: VrfKey | None = None

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
        round_ = task.current_round()
        description = description_of(task)
        factory, spec = model_of(description)
        handles = round_inputs(task, round_)
        requester = task.requester()
        global_state = deserialize(
            retrieve(
                self.store,
                handles["modelHandle"],
                handles["modelKeysHandle"],
                Context(task.address, round_, requester, "model"),
                self.account,
                max_bytes=spec.max_bytes,
            ),
            spec,
        )
        validation = dataset_from_bytes(
            retrieve(
                self.store,
                handles["validationHandle"],
                handles["validationKeysHandle"],
                Context(task.address, round_, requester, "validation"),
                self.account,
            )
        )
        updates: list[tuple[str, State, int]] = []
        rejected: dict[str, str] = {}
        for e in task.round_events("TrainingResultsSubmitted", round_):
            worker, samples = e["worker"], int(e["samples"])
            try:
                data = retrieve(
                    self.store,
                    Handle.from_bytes(e["modelHandle"]),
                    Handle.from_bytes(e["keysHandle"]),
                    Context(task.address, round_, worker, "update"),
                    self.account,
                    max_bytes=spec.max_bytes,
                )
                updates.append((worker, deserialize(data, spec), samples))
            except (StorageError, SharingError, ModelValidationError, ValueError) as exc:
                rejected[worker] = str(exc)
        evaluation = evaluate_round(
            factory, global_state, updates, validation, task.config().epsilon, measure=self.measure
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
                }
                for r in sorted(results, key=lambda r: r.worker.lower())
            ],
            accuracy=evaluation.accuracy_ppm,
            loss=evaluation.loss_ppm,
            model_digest=evaluation.digest.hex(),
            aggregate_handle=str(aggregate_h),
            aggregate_keys_handle=str(aggregate_k),
        )
        details_handle = self.store.put(details.to_bytes())
        manifest = details.manifest(details_handle)
        assert manifest.results_root == tree.root
        return Evaluated(round_, manifest, details, evaluation, rejected)

    def recover(self, task: Task, round_: int) -> Evaluated | None:
        """Rebuild the manifest this validator committed to in `round_` from its commitment's memo and
        the stored details (after a restart); None if it has not committed or the details are gone."""
        mine = [e for e in task.round_events("ManifestCommitted", round_) if e["validator"] == self.address]
        if not mine:
            return None
        try:
            handle = open_memo(self.account, task.address, round_, bytes(mine[-1]["memo"]))
            details = load_details(self.store, handle)
        except (StorageError, ProtocolError, ValueError):
            return None
        manifest = details.manifest(handle)
        salt = salt_for(self.account, task.address, round_)
        if task.commitment_for(self.address, round_, manifest, salt) != bytes(mine[-1]["commitment"]):
            return None
        return Evaluated(round_, manifest, details, None, {})

    @staticmethod
    def _samples(task: Task, round_: int, worker: str) -> int:
        return task.submission_of(round_, worker)[0]

    def commit_manifest(self, task: Task, work: Evaluated | None) -> TxResult:
        """Commit H(task, round, me, H(manifest), salt). A copycat commits someone else's commitment."""
        round_ = task.current_round()
        if self.behaviour is ValidatorBehaviour.COPYCAT:
            others = task.round_events("ManifestCommitted", round_)
            if not others:
                raise ProtocolError("a copycat validator needs someone else's commitment to copy")
            return task.commit_manifest(self.account, others[0]["commitment"])
        if work is None:
            raise ProtocolError("evaluate the round before committing")
        salt = salt_for(self.account, task.address, round_)
        memo = seal_memo(self.account, task.address, round_, Handle.from_bytes(work.manifest.details_handle))
        return task.commit_manifest(
            self.account, task.commitment_for(self.address, round_, work.manifest, salt), memo
        )

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        """Reveal the committed manifest and salt; a non-revealer stays silent. A copycat has nothing it
        can reveal: the commitment it copied binds its author's address."""
        if self.behaviour is ValidatorBehaviour.NON_REVEALER or work is None:
            return None
        salt = salt_for(self.account, task.address, work.round)
        return task.reveal_manifest(self.account, work.manifest, salt)

    def claim_reward(self, task: Task, round_: int) -> int:
        """Claim this round's validator reward if this validator agreed with the consensus."""
        try:
            res = task.claim_validator_reward(self.account, round_)
        except ContractRevert as exc:
            if exc.error in ("NoReward", "AlreadyClaimed"):
                return 0
            raise
        return int(res.event("RewardClaimed")["amount"])
