"""Connect to a chain by URL and send signed transactions to it.

``embedded`` (the default) is an in-process EVM (eth-tester over py-evm); ``http://…``/``https://…`` and
an IPC path are any JSON-RPC node (e.g. a local anvil). Transactions are always signed locally with the
participant's key and sent raw, so the same code runs on any node.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound
from web3.types import TxParams, TxReceipt, Wei

from refiner.chain.build import Artifact
from refiner.chain.embedded import embedded_provider
from refiner.chain.errors import ChainError, ContractRevert, decode_revert

EMBEDDED = "embedded"
_REVERTS = (ContractCustomError, ContractLogicError, TransactionFailed)
EMBEDDED_GAS_LIMIT = 10_000_000
#: Seconds a sent transaction may be unknown to the node before it counts as dropped.
DROPPED_AFTER = 5.0


@dataclass
class Chain:
    """A web3 connection plus what Refiner needs around it: signing, time control, funding."""

    w3: Web3
    url: str
    #: What answers: "embedded" | "anvil" | "rpc" (for people; code asks `is_dev_chain`, `manual_clock`)
    kind: str
    #: Gas used by every transaction this connection sent (for reports).
    gas_used: int = field(init=False, default=0)
    #: Held while a transaction is sent on the embedded chain; share it to serialise other requests.
    lock: threading.RLock = field(init=False, default_factory=threading.RLock)
    _chain_id: int = field(init=False, default=0)

    @classmethod
    def connect(cls, url: str = EMBEDDED) -> Chain:
        if url in (EMBEDDED, "eth-tester://", "eth-tester"):
            w3 = Web3(embedded_provider())
            # calls without a sender would each ask eth_accounts twice (web3's eth-tester middleware)
            w3.eth.default_account = w3.eth.accounts[0]
            return cls(w3, EMBEDDED, EMBEDDED)
        if url.startswith(("http://", "https://")):
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        elif url.startswith("ipc://") or url.endswith(".ipc"):
            w3 = Web3(Web3.IPCProvider(url.removeprefix("ipc://")))
        else:
            raise ValueError(f"unsupported chain URL {url!r}: use 'embedded', http(s)://… or a .ipc path")
        if not w3.is_connected():
            raise ChainError(f"no Ethereum JSON-RPC node answers at {url}")
        version = str(w3.client_version).lower()
        return cls(w3, url, "anvil" if "anvil" in version else "rpc")

    @property
    def is_dev_chain(self) -> bool:
        """Whether this chain mines, moves its clock and funds accounts when told (embedded or anvil)."""
        return self.kind != "rpc"

    @property
    def manual_clock(self) -> bool:
        """Whether blocks (and so time) come only when somebody asks for them (the embedded chain): its
        clock is the latest block's time, not the wall clock."""
        return self.kind == EMBEDDED

    @property
    def chain_id(self) -> int:
        if not self._chain_id:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    # ------------------------------------------------------------------ transactions

    def transact(self, sender: LocalAccount, call: ContractFunction, value: int = 0) -> TxReceipt:
        """Sign `call` with `sender`'s key, send it and wait for it to be mined.

        A refusal raises :class:`ContractRevert` (with the contract's custom error decoded) and costs
        nothing: on a node the call is simulated first (the gas estimate); on the embedded chain it runs
        once, for real, and a reverted transaction is undone (its block dropped) before the error is read.
        """
        params: TxParams = {"from": sender.address, "value": Wei(value)}
        if self.kind == EMBEDDED:
            return self._transact_embedded(sender, call, params)
        try:
            # estimate on the pending block, where the transaction will run: on the latest block a
            # storage slot written earlier in that block (e.g. a stake checkpoint) looks cheaper
            estimate = call.estimate_gas(dict(params), block_identifier="pending")  # type: ignore[arg-type]
            params["gas"] = estimate * 6 // 5
            tx = call.build_transaction(self._fill(sender, params))
        except _REVERTS as exc:
            raise _refusal(exc) from None
        return self._send(sender, tx)

    def _transact_embedded(self, sender: LocalAccount, call: ContractFunction, params: TxParams) -> TxReceipt:
        # py-evm's gas estimate is a binary search (~15 executions) and a trial eth_call one more: instead
        # the transaction runs once with a generous limit (only the gas used is paid) and, if it reverted,
        # the chain is put back as it was, so that a refusal costs neither gas nor a nonce.
        params["gas"] = EMBEDDED_GAS_LIMIT
        with self.lock:  # nobody else's transaction may land between the snapshot and a revert
            snapshot = self._testing.snapshot()
            tx = call.build_transaction(self._fill(sender, params))
            signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
            if receipt["status"] == 1:
                self.gas_used += int(receipt["gasUsed"])
                return receipt
            self._testing.revert(snapshot)
            try:  # the same call again, as a simulation on the restored state, for the contract's error
                call.call(dict(params), block_identifier="pending")  # type: ignore[arg-type]
            except _REVERTS as exc:
                raise _refusal(exc) from None
        raise ChainError(f"transaction {tx_hash.hex()} reverted (undone); its simulation did not")

    def deploy(
        self, sender: LocalAccount, artifact: Artifact, *args: Any, value: int = 0
    ) -> tuple[ChecksumAddress, TxReceipt]:
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        try:
            tx = factory.constructor(*args).build_transaction(
                self._fill(sender, {"from": sender.address, "value": Wei(value)})
            )
        except _REVERTS as exc:
            raise _refusal(exc) from None
        receipt = self._send(sender, tx)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deployment of {artifact.name} returned no contract address")
        return address, receipt

    def send_ether(self, sender: LocalAccount, to: str, value: int) -> TxReceipt:
        tx: TxParams = {"from": sender.address, "to": Web3.to_checksum_address(to), "value": Wei(value)}
        tx = self._fill(sender, tx)
        tx["gas"] = 21_000
        return self._send(sender, tx)

    def _fill(self, sender: LocalAccount, params: TxParams) -> TxParams:
        params["nonce"] = self.w3.eth.get_transaction_count(sender.address, "pending")
        params["chainId"] = self.chain_id
        return params

    def _send(self, sender: LocalAccount, tx: TxParams) -> TxReceipt:
        signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        if self.kind == EMBEDDED:  # mined on send: one lookup instead of polling
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        else:
            receipt = self._wait_for_receipt(tx_hash)
        self.gas_used += int(receipt["gasUsed"])
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash.hex()} reverted on chain (gas used {receipt['gasUsed']})")
        return receipt

    def _wait_for_receipt(self, tx_hash: Any, timeout: float = 300.0, poll: float = 0.2) -> TxReceipt:
        """Wait for the transaction to be mined. A transaction the node no longer knows (a restarted dev
        node forgets its mempool) raises :class:`ChainError` after a few seconds instead of hanging: the
        caller re-reads the state and decides again."""
        deadline = time.monotonic() + timeout
        unknown_since: float | None = None
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                pass
            now = time.monotonic()
            try:
                self.w3.eth.get_transaction(tx_hash)
                unknown_since = None
            except TransactionNotFound:
                unknown_since = unknown_since or now
                if now - unknown_since > DROPPED_AFTER:
                    raise ChainError(
                        f"transaction {tx_hash.hex()} was dropped by the node before being mined"
                    ) from None
            if now > deadline:
                raise ChainError(f"transaction {tx_hash.hex()} not mined within {timeout:g} s")
            time.sleep(poll)

    # ------------------------------------------------------------------ dev-chain helpers

    def fund(self, address: str, value: int) -> None:
        """Send `value` wei to `address` from the node's first unlocked account (dev chains only)."""
        if not self.is_dev_chain:
            raise ChainError("funding needs a dev chain with unlocked accounts (embedded or anvil)")
        faucet = self.w3.eth.accounts[0]
        tx_hash = self.w3.eth.send_transaction(
            {"from": faucet, "to": Web3.to_checksum_address(address), "value": Wei(value)}
        )
        self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def now(self) -> int:
        """Timestamp of the latest block: what `block.timestamp` was when it was mined."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def increase_time(self, seconds: int) -> None:
        """Move the chain's clock forward and mine a block (dev chains only)."""
        if self.kind == EMBEDDED:
            self._testing.timeTravel(self.now() + seconds)
            self._testing.mine()
        elif self.kind == "anvil":
            self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
            self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        else:
            raise ChainError("time travel needs a dev chain (embedded or anvil)")

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (dev chains only), e.g. to reach a task's seed block."""
        if self.kind == EMBEDDED:
            self._testing.mine(blocks)
        elif self.kind == "anvil":
            self.w3.provider.make_request("anvil_mine", [blocks])  # type: ignore[arg-type]
        else:
            raise ChainError("mining on demand needs a dev chain (embedded or anvil)")

    def snapshot(self) -> Any:
        return self._testing.snapshot()

    def revert(self, snapshot_id: Any) -> None:
        self._testing.revert(snapshot_id)

    @property
    def _testing(self) -> Any:
        # web3 attaches the `testing` module at runtime; its methods map to evm_* / testing_* RPCs.
        return self.w3.testing  # type: ignore[attr-defined]


def _refusal(exc: BaseException) -> ContractRevert:
    """The contract's refusal behind a failed call: its custom error, or a `require` message."""
    data = _revert_data(exc)
    if data is None:
        reason = _REASON_TEXT.search(str(exc))
        if reason:  # the embedded EVM gives `require` messages as text
            return ContractRevert("Error", {"message": reason.group(1).strip()})
    return decode_revert(data)


_REASON_TEXT = re.compile(r"execution reverted: (?!b['\"])(.+)", re.DOTALL)


def _revert_data(exc: BaseException) -> bytes | str | None:
    """The revert data behind `exc`: web3 puts it in ``.data``; the embedded EVM raises its own
    ``TransactionFailed`` whose (chained) cause carries the raw bytes."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes wrap it: {"data": "0x…"}
        data = data.get("data")
    if isinstance(data, (bytes, str)) and data:
        return data
    seen: BaseException | None = exc
    while seen is not None:
        if seen.args and isinstance(seen.args[0], bytes):
            return seen.args[0]
        if seen.args and isinstance(seen.args[0], str):  # eth_call: "execution reverted: b'…'"
            found = _BYTES_REPR.search(seen.args[0])
            if found:
                value = ast.literal_eval(found.group(0))
                if isinstance(value, bytes):
                    return value
        seen = seen.__cause__ or seen.__context__
    return None


_BYTES_REPR = re.compile(r"""b(['"]).*\1""", re.DOTALL)
