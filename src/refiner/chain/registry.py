"""Typed wrapper of the RefinerRegistry contract (deployed once by the administrator)."""

from __future__ import annotations

from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner.chain.accounts import public_key_bytes, vrf_key_for
from refiner.chain.build import load_artifact
from refiner.chain.connection import Chain
from refiner.chain.contract import ContractWrapper, TxResult
from refiner.chain.sortition import Sortition
from refiner.chain.types import ValidatorInfo
from refiner.sortition.vrf import VrfKey, prove

#: Longest a seat locks a validator's stake by default: a month (RefinerRegistry.maxSeatLock).
DEFAULT_SEAT_LOCK = 30 * 86400


def task_codehash() -> bytes:
    """keccak256 of the RefinerTask runtime code the registry approves by default."""
    return keccak(load_artifact("RefinerTask").deployed_bytecode)


#: Blocks per sortition epoch of a registry deployed from Python: short, for dev chains (one block per
#: transaction) and tests; a public chain would take hours of blocks (e.g. 300 ≈ 1 h at 12 s).
DEFAULT_EPOCH_LENGTH = 16


def epoch_seed(block_hash: bytes, registry: str, epoch: int) -> int:
    """A sortition epoch's seed, as `fixEpochSeed` computes it from its seed block's hash."""
    return int.from_bytes(
        keccak(encode(["bytes32", "address", "uint256"], [block_hash, registry, epoch])), "big"
    )


class Registry(ContractWrapper):
    ARTIFACT = "RefinerRegistry"

    def __init__(self, chain: Chain, address: str, from_block: int = 0) -> None:
        super().__init__(chain, address, from_block)
        self._keys: dict[str, bytes] = {}

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        admin: LocalAccount,
        *,
        min_stake: int = 10**15,
        unbonding_delay: int = 7 * 86400,
        stake_unit: int | None = None,
        sortition: str | None = None,
        approved_task_code: bytes | None = None,
        epoch_length: int = DEFAULT_EPOCH_LENGTH,
        max_seat_lock: int = DEFAULT_SEAT_LOCK,
    ) -> Registry:
        """Deploy the registry (and, unless given, the sortition contract it points every task to).
        `stake_unit` (default: `min_stake`) is the wei per unit of sortition weight; `epoch_length` the
        blocks per sortition epoch (tasks opening recruitment in one epoch share the next one's committee);
        `max_seat_lock` the longest (seconds) a committee seat locks a validator's stake."""
        codehash = task_codehash() if approved_task_code is None else approved_task_code
        if sortition is None:
            sortition = Sortition.deploy(chain, admin).address
        unit = min_stake if stake_unit is None else stake_unit
        address, receipt = chain.deploy(
            admin,
            load_artifact(cls.ARTIFACT),
            admin.address,
            min_stake,
            unbonding_delay,
            unit,
            sortition,
            codehash,
            epoch_length,
            max_seat_lock,
        )
        return cls(chain, address, from_block=receipt["blockNumber"])

    # ------------------------------------------------------------------ transactions

    def register_worker(self, worker: LocalAccount, public_key: bytes | None = None) -> TxResult:
        key = public_key_bytes(worker) if public_key is None else public_key
        return self._send(worker, "registerWorker", key)

    def register_validator(
        self,
        validator: LocalAccount,
        stake: int,
        vrf_key: VrfKey | None = None,
        public_key: bytes | None = None,
    ) -> TxResult:
        """Register with the account's public key, a VRF key (default: derived from the account key,
        see `vrf_key_for`) proven by a VRF proof for `possession_seed`, and `stake` wei bonded."""
        key = public_key_bytes(validator) if public_key is None else public_key
        vrf = vrf_key_for(validator) if vrf_key is None else vrf_key
        possession = prove(vrf, self.possession_seed(validator.address))
        return self._send(validator, "registerValidator", key, possession.as_tuple(), value=stake)

    def possession_seed(self, validator: str) -> int:
        """The seed a validator proves its VRF key with when it registers."""
        return int(self._call("possessionSeed", validator))

    def bond(self, validator: LocalAccount, amount: int) -> TxResult:
        return self._send(validator, "bond", value=amount)

    def request_unbond(self, validator: LocalAccount, amount: int) -> TxResult:
        return self._send(validator, "requestUnbond", amount)

    def withdraw_stake(self, validator: LocalAccount) -> TxResult:
        return self._send(validator, "withdrawStake")

    def register_task(self, requester: LocalAccount, task: str) -> TxResult:
        return self._send(requester, "registerTask", self.chain.w3.to_checksum_address(task))

    def fix_epoch_seed(self, sender: LocalAccount, epoch: int) -> TxResult:
        return self._send(sender, "fixEpochSeed", epoch)

    def set_task_code_approval(self, admin: LocalAccount, codehash: bytes, approved: bool) -> TxResult:
        return self._send(admin, "setTaskCodeApproval", codehash, approved)

    # ------------------------------------------------------------------ views

    def owner(self) -> str:
        return str(self._call("owner"))

    def min_stake(self) -> int:
        return int(self._call("minStake"))

    def unbonding_delay(self) -> int:
        return int(self._call("unbondingDelay"))

    def max_seat_lock(self) -> int:
        """Longest (seconds) a committee seat locks a validator's stake; after it the validator may
        unbond even if the task still runs."""
        return int(self._call("maxSeatLock"))

    def is_worker(self, account: str) -> bool:
        return bool(self._call("isWorker", account))

    def is_validator(self, account: str) -> bool:
        return bool(self._call("isValidator", account))

    def is_active_task(self, task: str) -> bool:
        return bool(self._call("isActiveTask", task))

    def worker_key(self, worker: str) -> bytes:
        return bytes(self._call("workerKey", worker))

    def validator_key(self, validator: str) -> bytes:
        return bytes(self._call("validatorKey", validator))

    def public_key(self, account: str) -> bytes:
        """The key `account` registered, as a worker or a validator, to encrypt to (empty if neither).

        Read once per account: a registered key hashes to its account's address, so it can never be
        another (whether the account is still registered is for `worker_key`/`validator_key` to say).
        """
        cached = self._keys.get(account)
        if cached is None:
            cached = self.validator_key(account) or self.worker_key(account)
            if cached:
                self._keys[account] = cached
        return cached

    def stake_unit(self) -> int:
        return int(self._call("stakeUnit"))

    def epoch_length(self) -> int:
        return int(self._call("epochLength"))

    def epoch_seed(self, epoch: int) -> int:
        """The seed fixed for `epoch` (0 if none yet)."""
        return int(self._call("epochSeed", epoch))

    def next_seed_epoch(self) -> tuple[int, int, int]:
        """(epoch, seed block, snapshot block) a task opening recruitment in the next block draws with."""
        epoch, seed_block, snapshot = self._call("nextSeedEpoch")
        return int(epoch), int(seed_block), int(snapshot)

    def sortition(self) -> Sortition:
        return Sortition(self.chain, self._call("sortition"))

    def vrf_key(self, validator: str) -> tuple[int, int]:
        x, y = self._call("vrfKey", validator)
        return int(x), int(y)

    def stake_at(self, validator: str, block: int) -> int:
        """The validator's bonded stake at the end of `block`."""
        return int(self._call("stakeAt", validator, block))

    def total_stake_at(self, block: int) -> int:
        return int(self._call("totalStakeAt", block))

    def validator_info(self, validator: str) -> ValidatorInfo:
        return ValidatorInfo(*self._call("validatorInfo", validator))

    def active_tasks(self, page_size: int = 500) -> list[str]:
        """All active tasks, read page by page."""
        total = int(self._call("activeTaskCount"))
        tasks: list[str] = []
        for start in range(0, total, page_size):
            tasks.extend(self._call("activeTasks", start, page_size))
        return tasks

    def seats_of(self, task: str) -> list[str]:
        return list(self._call("seatsOf", task))
