"""Typed wrapper of the RefinerRegistry contract (deployed once by the administrator)."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner.chain.accounts import public_key_bytes
from refiner.chain.build import load_artifact
from refiner.chain.connection import Chain
from refiner.chain.contract import ContractWrapper, TxResult
from refiner.chain.types import ValidatorInfo


def task_codehash() -> bytes:
    """keccak256 of the RefinerTask runtime code the registry approves by default."""
    return keccak(load_artifact("RefinerTask").deployed_bytecode)


class Registry(ContractWrapper):
    ARTIFACT = "RefinerRegistry"

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        admin: LocalAccount,
        *,
        min_stake: int = 10**15,
        unbonding_delay: int = 7 * 86400,
        approved_task_code: bytes | None = None,
    ) -> Registry:
        codehash = task_codehash() if approved_task_code is None else approved_task_code
        address, receipt = chain.deploy(
            admin, load_artifact(cls.ARTIFACT), admin.address, min_stake, unbonding_delay, codehash
        )
        return cls(chain, address, from_block=receipt["blockNumber"])

    # ------------------------------------------------------------------ transactions

    def register_worker(self, worker: LocalAccount, public_key: bytes | None = None) -> TxResult:
        key = public_key_bytes(worker) if public_key is None else public_key
        return self._send(worker, "registerWorker", key)

    def register_validator(
        self, validator: LocalAccount, stake: int, public_key: bytes | None = None
    ) -> TxResult:
        key = public_key_bytes(validator) if public_key is None else public_key
        return self._send(validator, "registerValidator", key, value=stake)

    def bond(self, validator: LocalAccount, amount: int) -> TxResult:
        return self._send(validator, "bond", value=amount)

    def request_unbond(self, validator: LocalAccount, amount: int) -> TxResult:
        return self._send(validator, "requestUnbond", amount)

    def withdraw_stake(self, validator: LocalAccount) -> TxResult:
        return self._send(validator, "withdrawStake")

    def register_task(self, requester: LocalAccount, task: str) -> TxResult:
        return self._send(requester, "registerTask", self.chain.w3.to_checksum_address(task))

    def set_task_code_approval(self, admin: LocalAccount, codehash: bytes, approved: bool) -> TxResult:
        return self._send(admin, "setTaskCodeApproval", codehash, approved)

    # ------------------------------------------------------------------ views

    def owner(self) -> str:
        return str(self._call("owner"))

    def min_stake(self) -> int:
        return int(self._call("minStake"))

    def unbonding_delay(self) -> int:
        return int(self._call("unbondingDelay"))

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
