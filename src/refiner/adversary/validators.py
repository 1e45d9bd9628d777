"""Validator attacks of the adversary study (docs/robustness.md; what the contract makes of each is in
tests/roles/test_validator_attacks.py), each a subclass of the honest
:class:`~refiner.roles.validator.Validator` overriding the step it cheats in:

* ``copycat``: commits a copy of another member's commitment without evaluating. The commitment binds its
  author's address, so the copycat can never reveal it.
* ``non-revealer``: evaluates and commits, never reveals; the round waits for the reveal deadline.
* ``random``: makes up a manifest (random verdicts, contributions, accuracy and model digest), stores
  details that match it, commits and reveals it.
* ``colluder``: evaluates honestly, then commits and reveals the ring's forged manifest: every worker the
  evaluation rejected is accepted with a contribution of ``COLLUSION_CONTRIBUTION``. The forgery is a
  deterministic function of the honest evaluation, so every colluder reveals the same vote.
* ``thief``: commits a copy of another member's commitment (or, when nobody has committed yet, one it
  cannot open either) and at reveal time submits another member's manifest and salt, read from that
  member's reveal transaction (as it would from the mempool). The contract refuses it: the commitment
  binds the sender, so neither the copied commitment nor its own opens for it.
* ``lazy``: does not evaluate; before committing it lists the (shared directory) store and copies the
  first other member's details of the round it can read, as its own vote. Details are stored encrypted
  under a key only their author knows before the reveal, so it finds none.
* ``poisoner``: evaluates honestly and reveals the consensus vote, but with details that parse and are
  malformed (a result that is not a record, a key handle that is not a handle). The vote key does not
  cover the details, so the contract cannot refuse them: readers skip them.
* ``bad-aggregate``: evaluates honestly and reveals the consensus vote with well-formed details whose
  aggregate is garbage nobody can open: the requester takes another agreeing member's aggregate.
"""

from __future__ import annotations

import json
import random
from dataclasses import fields, replace
from typing import Any, ClassVar

from eth_typing import HexStr
from eth_utils import keccak

from refiner.chain import Manifest, Task, TxResult, WorkerResult
from refiner.roles.validator import Evaluated, Validator, ValidatorBehaviour
from refiner.storage import DirectoryStore, Handle
from refiner.units import ONE
from refiner.wire.details import MAX_DETAILS, ManifestDetails, ProtocolError

#: What the colluding ring credits each worker the honest evaluation rejected.
COLLUSION_CONTRIBUTION = 100_000


def _task_round(task: Task, round_: int) -> bytes:
    return bytes.fromhex(task.address[2:]) + round_.to_bytes(4, "big")


def _copied_commitment(validator: Validator, task: Task, round_: int) -> bytes | None:
    """The first other member's commitment of `round_`, if any."""
    for e in task.round_events("ManifestCommitted", round_):
        if e["validator"] != validator.address:
            return bytes(e["commitment"])
    return None


class Copycat(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.COPYCAT

    @property
    def evaluates(self) -> bool:
        return False

    @property
    def reveals(self) -> bool:
        return False  # the commitment it copied binds its author's address

    def commit_manifest(self, task: Task, work: Evaluated | None) -> TxResult:
        copied = _copied_commitment(self, task, task.current_round())
        if copied is None:
            raise ProtocolError("a copycat validator needs someone else's commitment to copy")
        return task.commit_manifest(self.account, copied)

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        return None


class NonRevealer(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.NON_REVEALER

    @property
    def reveals(self) -> bool:
        return False

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        return None


class RandomManifest(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.RANDOM
    evaluates_updates: ClassVar[bool] = False

    def evaluate(self, task: Task) -> Evaluated:
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
                "earned": rng.randrange(task.config().worker_reward + 1),
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


class Colluder(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.COLLUDER

    def evaluate(self, task: Task) -> Evaluated:
        return self._forged(task, super().evaluate(task))

    def _forged(self, task: Task, work: Evaluated) -> Evaluated:
        """The ring's manifest: the honest evaluation with every rejected worker accepted and credited
        COLLUSION_CONTRIBUTION, the earnings following (the aggregate and its digest are left as
        evaluated). Unchanged when the evaluation rejected nobody: the ring then has no one to pay."""
        results = [
            r if r["accepted"] else {**r, "accepted": True, "contribution": COLLUSION_CONTRIBUTION}
            for r in work.details.results
        ]
        if results == work.details.results:
            return work
        forged = self.with_earnings(
            task,
            work.round,
            [WorkerResult(r["worker"], r["accepted"], r["samples"], r["contribution"]) for r in results],
        )
        results = [{**r, "earned": f.earned} for r, f in zip(results, forged, strict=True)]
        details = replace(work.details, results=results)
        manifest = details.manifest(self._put_details(work.details.task, work.round, details.to_bytes()))
        return Evaluated(work.round, manifest, details, work.evaluation, work.rejected_files)


class Thief(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.THIEF

    def commit_manifest(self, task: Task, work: Evaluated | None) -> TxResult:
        """Someone else's commitment; with nobody to copy yet, a commitment it cannot open either."""
        round_ = task.current_round()
        copied = _copied_commitment(self, task, round_)
        if copied is None:
            copied = keccak(b"refiner-thief" + bytes(self.account.key) + _task_round(task, round_))
        return task.commit_manifest(self.account, copied)

    def reveal_manifest(self, task: Task, work: Evaluated | None) -> TxResult | None:
        """Another validator's revealed manifest and salt: the contract refuses it (`ContractRevert`
        CommitmentMismatch); with no reveal to copy yet it raises ProtocolError."""
        manifest, salt = self.stolen_reveal(task, task.current_round())
        return task.reveal_manifest(self.account, manifest, salt)

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


class Lazy(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.LAZY
    evaluates_updates: ClassVar[bool] = False

    def evaluate(self, task: Task) -> Evaluated:
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


class Poisoner(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.POISONER

    def evaluate(self, task: Task) -> Evaluated:
        """The honest vote with details that parse but are malformed."""
        work = super().evaluate(task)
        stored = json.loads(work.details.to_bytes())
        raw = json.dumps({**stored, "results": [1], "aggregate_keys_handle": 5}).encode()
        spoiled = self._put_details(task.address, work.round, raw)
        return replace(work, manifest=replace(work.manifest, details_handle=bytes(spoiled)))


class BadAggregate(Validator):
    behaviour: ClassVar[ValidatorBehaviour] = ValidatorBehaviour.BAD_AGGREGATE

    def evaluate(self, task: Task) -> Evaluated:
        """The honest vote with well-formed details naming an aggregate that is garbage."""
        work = super().evaluate(task)
        garbage = self.store.put(keccak(b"refiner-bad-aggregate" + bytes(self.account.key)) * 64)
        details = replace(work.details, aggregate_handle=str(garbage))
        manifest = details.manifest(self._put_details(task.address, work.round, details.to_bytes()))
        return replace(work, manifest=manifest, details=details)


#: The validator class of each behaviour.
VALIDATORS: dict[ValidatorBehaviour, type[Validator]] = {
    cls.behaviour: cls
    for cls in (
        Validator,
        Copycat,
        NonRevealer,
        RandomManifest,
        Colluder,
        Thief,
        Lazy,
        Poisoner,
        BadAggregate,
    )
}


def make_validator(behaviour: ValidatorBehaviour, *args: Any, **kwargs: Any) -> Validator:
    """A validator that behaves as `behaviour` (the honest :class:`Validator` for ``honest``)."""
    return VALIDATORS[behaviour](*args, **kwargs)


def with_behaviour(validator: Validator, behaviour: ValidatorBehaviour) -> Validator:
    """The same participant (account, keys, settings) behaving as `behaviour`."""
    settings = {f.name: getattr(validator, f.name) for f in fields(validator) if f.init}
    return make_validator(behaviour, **settings)
