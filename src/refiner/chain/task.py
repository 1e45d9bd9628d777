"""Typed wrapper of the RefinerTask contract: one method per protocol step, named as in the contract."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import Web3Exception

from refiner.chain.build import load_artifact
from refiner.chain.connection import Chain
from refiner.chain.contract import ContractWrapper, Event, TxResult
from refiner.chain.errors import ChainError
from refiner.chain.registry import Registry, epoch_seed
from refiner.chain.types import Manifest, RoundInfo, Status, TaskConfig, WorkerResult, commitment
from refiner.sortition.vrf import Proof


class Task(ContractWrapper):
    ARTIFACT = "RefinerTask"

    def __init__(self, chain: Chain, address: str, from_block: int | None = None) -> None:
        super().__init__(chain, address, 0)
        self._round_blocks: dict[int, int] = {}
        # what can no longer change, read once (an embedded-chain view costs ~50 ms of py-evm)
        self._config: TaskConfig | None = None
        self._requester: str | None = None
        self._registry: str | None = None
        self._committee: dict[str, int] | None = None
        self._workers: list[str] | None = None
        self._settled_reveals: dict[int, dict[str, tuple[Manifest, bytes]]] = {}
        # events are scanned from the deployment block (public nodes limit eth_getLogs ranges)
        self.from_block = from_block if from_block is not None else self._created_block()

    def _created_block(self) -> int:
        try:
            return int(self._call("createdBlock"))
        except (Web3Exception, ChainError, ValueError, TransactionFailed):  # not a task: found out later
            return 0

    @classmethod
    def deploy(
        cls, chain: Chain, requester: LocalAccount, registry: str, config: TaskConfig, *, value: int = 0
    ) -> Task:
        address, receipt = chain.deploy(
            requester, load_artifact(cls.ARTIFACT), registry, config.as_tuple(), value=value
        )
        return cls(chain, address, from_block=receipt["blockNumber"])

    def round_events(self, name: str, round_: int) -> list[Event]:
        """Events `name` of round `round_`, scanning only from the block where that round started."""
        return self.get_events(name, from_block=self.round_start_block(round_), round=round_)

    def round_start_block(self, round_: int) -> int:
        """The block of the round's RoundStarted event (remembered once found)."""
        if round_ not in self._round_blocks:
            logs = self.contract.events.RoundStarted().get_logs(
                from_block=self.from_block, argument_filters={"round": round_}
            )
            if not logs:
                return self.chain.w3.eth.block_number + 1  # not started: nothing to scan yet
            self._round_blocks[round_] = int(logs[-1]["blockNumber"])
        return self._round_blocks[round_]

    # ------------------------------------------------------------------ requester

    def fund(self, requester: LocalAccount, amount: int) -> TxResult:
        return self._send(requester, "fund", value=amount)

    def withdraw(self, requester: LocalAccount, amount: int) -> TxResult:
        return self._send(requester, "withdraw", amount)

    def open_recruitment(self, requester: LocalAccount) -> TxResult:
        return self._send(requester, "openRecruitment")

    def close_recruitment(self, requester: LocalAccount) -> TxResult:
        return self._send(requester, "closeRecruitment")

    def start_round(
        self,
        requester: LocalAccount,
        model_handle: bytes,
        model_keys_handle: bytes,
        validation_handle: bytes,
        validation_keys_handle: bytes,
        *,
        value: int = 0,
    ) -> TxResult:
        return self._send(
            requester,
            "startRound",
            model_handle,
            model_keys_handle,
            validation_handle,
            validation_keys_handle,
            value=value,
        )

    def stop_training(self, requester: LocalAccount) -> TxResult:
        return self._send(requester, "stopTraining")

    # ------------------------------------------------------------------ workers

    def sign_up(self, worker: LocalAccount, deposit: int | None = None) -> TxResult:
        """Sign up, paying `deposit` (default: the task's `sign_up_deposit`)."""
        value = self.config().sign_up_deposit if deposit is None else deposit
        return self._send(worker, "signUp", value=value)

    def refund_deposit(self, worker: LocalAccount) -> TxResult:
        """Take the sign-up deposit back from a task that terminated before round 1."""
        return self._send(worker, "refundDeposit")

    def submit_training_results(
        self, worker: LocalAccount, model_handle: bytes, keys_handle: bytes, samples: int
    ) -> TxResult:
        return self._send(worker, "submitTrainingResults", model_handle, keys_handle, samples)

    def claim_reward(
        self, worker: LocalAccount, round_: int, result: WorkerResult, proof: Sequence[bytes]
    ) -> TxResult:
        return self._send(
            worker,
            "claimReward",
            round_,
            result.accepted,
            result.samples,
            result.contribution,
            result.earned,
            list(proof),
        )

    # ------------------------------------------------------------------ validators

    def fix_seed(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "fixSeed")

    def claim_seat(self, validator: LocalAccount, proof: Proof, seats: int) -> TxResult:
        return self._send(validator, "claimSeat", proof.as_tuple(), seats)

    def sortition_seed(self) -> int | None:
        """The seed validators prove for: fixed on chain (by this task or, for its epoch, by any task in
        the registry), or computed from the seed block's hash once a block follows it (as `fixSeed` will);
        None until then, and after the hash aged out unfixed."""
        fixed = int(self._call("seed"))
        if fixed:
            return fixed
        seed_block = int(self._call("seedBlock"))
        if seed_block == 0:
            return None
        epoch = int(self._call("seedEpoch"))
        registry = Registry(self.chain, self.registry())
        of_epoch = registry.epoch_seed(epoch)
        if of_epoch:
            return of_epoch
        latest = self.chain.w3.eth.block_number
        if latest <= seed_block or latest - seed_block >= 256:
            # not usable yet (a claim must come after the seed block), or its hash is gone: `fixSeed`
            # will move the task to a later epoch
            return None
        block_hash = bytes(self.chain.w3.eth.get_block(seed_block)["hash"])
        return epoch_seed(block_hash, registry.address, epoch)

    def seed_epoch(self) -> int:
        """The registry epoch whose seed draws this task's committee (0 before recruitment opens)."""
        return int(self._call("seedEpoch"))

    def seed_block(self) -> int:
        return int(self._call("seedBlock"))

    def snapshot_block(self) -> int:
        return int(self._call("snapshotBlock"))

    def commitment_for(self, validator: str, round_: int, manifest: Manifest, salt: bytes) -> bytes:
        """The commitment `validator` must send for `manifest` (computed locally, as the contract does)."""
        return commitment(self.chain.chain_id, self.address, round_, validator, manifest.hash(), salt)

    def commit_manifest(
        self, validator: LocalAccount, commitment_: bytes, memo: bytes = bytes(32)
    ) -> TxResult:
        """Commit to a manifest; `memo` is an opaque 32-byte note kept in the event (see the contract)."""
        return self._send(validator, "commitManifest", commitment_, memo)

    def reveal_manifest(self, validator: LocalAccount, manifest: Manifest, salt: bytes) -> TxResult:
        return self._send(validator, "revealManifest", manifest.as_tuple(), salt)

    def claim_validator_reward(self, validator: LocalAccount) -> TxResult:
        """Claim the validator rewards of every finalized round not paid yet."""
        return self._send(validator, "claimValidatorReward")

    # ------------------------------------------------------------------ anyone

    def advance(self, sender: LocalAccount) -> TxResult:
        return self._send(sender, "advance")

    def finalize_round(self, sender: LocalAccount, manifest: Manifest | None = None) -> TxResult:
        """Settle the current round. Without `manifest`, the consensus manifest (if any) is looked up in
        this round's reveal events."""
        if manifest is None:
            manifest = self.consensus_manifest(self.current_round()) or Manifest.empty()
        return self._send(sender, "finalizeRound", manifest.as_tuple())

    def release_unclaimed(self, sender: LocalAccount) -> TxResult:
        """Return the task's unclaimed rewards to the budget (after its claim window)."""
        return self._send(sender, "releaseUnclaimed")

    def reveals(self, round_: int, *, settled: bool = False) -> dict[str, tuple[Manifest, bytes]]:
        """Validator → (manifest, salt) revealed in `round_`, read from the chain's events (the salt opens
        the validator's stored details). `settled`: the caller knows the round is finalized, so no
        reveal can follow and the answer is kept for next time."""
        if round_ in self._settled_reveals:
            return dict(self._settled_reveals[round_])
        revealed = {
            e["validator"]: (Manifest.from_tuple(e["manifest"]), bytes(e["salt"]))
            for e in self.round_events("ManifestRevealed", round_)
        }
        if settled:
            self._settled_reveals[round_] = revealed
        return dict(revealed)

    def revealed_manifests(self, round_: int, *, settled: bool = False) -> dict[str, Manifest]:
        """Validator → manifest revealed in `round_` (see `reveals`)."""
        return {v: m for v, (m, _) in self.reveals(round_, settled=settled).items()}

    def consensus_manifest(self, round_: int) -> Manifest | None:
        """A revealed manifest whose vote key holds the majority of `round_`, if one does."""
        info = self.round_info(round_)
        key = info.consensus_key
        for manifest in self.revealed_manifests(round_, settled=info.finalized).values():
            if manifest.vote_key() == key:
                return manifest
        return None

    # ------------------------------------------------------------------ views

    def requester(self) -> str:
        if self._requester is None:
            self._requester = str(self._call("requester"))
        return self._requester

    def registry(self) -> str:
        if self._registry is None:
            self._registry = str(self._call("registry"))
        return self._registry

    def status(self) -> Status:
        return Status(self._call("status"))

    def config(self) -> TaskConfig:
        """The configuration, fixed at deployment."""
        if self._config is None:
            self._config = TaskConfig.from_tuple(self._call("config"))
        return self._config

    def current_round(self) -> int:
        return int(self._call("currentRound"))

    def deadline(self) -> int:
        return int(self._call("deadline"))

    def budget(self) -> int:
        return int(self._call("budget"))

    def owed(self) -> int:
        return int(self._call("owed"))

    def deposits_held(self) -> int:
        """Workers' sign-up deposits the contract holds now (part of `owed`)."""
        return int(self._call("depositsHeld"))

    def last_consensus_round(self) -> int:
        return int(self._call("lastConsensusRound"))

    def recruitment_opened(self) -> bool:
        return bool(self._call("recruitmentOpened"))

    def recruitment_closed(self) -> bool:
        return bool(self._call("recruitmentClosed"))

    def workers(self) -> list[str]:
        """Signed-up workers in sign-up order; fixed once recruitment has closed (read once then: the
        view returns every address, O(N) a call, and each participant's `due` asks it)."""
        if self._workers is not None:
            return list(self._workers)
        closed = self.recruitment_closed()
        workers = list(self._call("workers"))
        if closed:
            self._workers = workers
        return list(workers)

    def signed_up(self, account: str) -> bool:
        """Whether `account` signed up as a worker (one storage read, whatever the number of workers)."""
        return bool(self._call("signedUp", account))

    def committee(self) -> dict[str, int]:
        """Member → vote weight; fixed once recruitment has closed."""
        if self._committee is not None:
            return dict(self._committee)
        closed = self.recruitment_closed()
        members, weights = self._call("committee")
        committee = dict(zip(members, weights, strict=True))
        if closed:
            self._committee = committee
        return dict(committee)

    def total_weight(self) -> int:
        return int(self._call("totalWeight"))

    def round_info(self, round_: int) -> RoundInfo:
        return RoundInfo.from_tuple(self._call("roundInfo", round_))

    def submitted(self, round_: int, worker: str) -> bool:
        """Whether `worker` submitted in the round."""
        return bool(self._call("submitted", round_, worker))

    def submitted_samples(self, round_: int, worker: str) -> int:
        """The samples `worker` submitted in the round, 0 if it did not submit. The contract stores only
        that it submitted: the samples come from the worker's TrainingResultsSubmitted event."""
        if not self.submitted(round_, worker):
            return 0
        start = self.round_start_block(round_)
        (event,) = self.get_events("TrainingResultsSubmitted", from_block=start, round=round_, worker=worker)
        return int(event["samples"])

    def worker_claims(self, worker: str) -> tuple[int, int]:
        """(the round of the worker's last claim, 0 if none; wei its claims have paid it in the task)."""
        last, paid = self._call("workerClaims", worker)
        return int(last), int(paid)

    def validator_reward_of(self, validator: str) -> int:
        """The validator rewards `validator` can claim now (wei)."""
        return int(self._call("validatorRewardOf", validator))

    def validator_unit(self, round_: int) -> int:
        """A finalized round's validator reward per seat (0 without consensus)."""
        return int(self._call("validatorUnit", round_))

    def worker_escrow(self) -> int:
        """Worker rewards of finalized rounds not claimed yet."""
        return int(self._call("workerEscrow"))

    def validator_escrow(self) -> int:
        """Validator rewards of finalized rounds not claimed yet."""
        return int(self._call("validatorEscrow"))

    def claim_deadline(self) -> int:
        """Until when rewards can be claimed (0 until the task terminates)."""
        return int(self._call("claimDeadline"))

    def ballot_of(self, round_: int, validator: str) -> bytes:
        return bytes(self._call("ballotOf", round_, validator))

    def vote_weight_of(self, round_: int, vote_key: bytes) -> int:
        return int(self._call("voteWeightOf", round_, vote_key))

    def balance(self) -> int:
        return int(self.chain.w3.eth.get_balance(self.address))
