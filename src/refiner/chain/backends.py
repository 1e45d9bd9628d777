"""How each kind of node is driven, behind one small interface (web3's provider/middleware style): how a
transaction is sent and its receipt awaited, and which dev-chain helpers (time travel, mining on demand,
funding) the node has. `Chain` holds one and never asks what kind it is."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt

from refiner.chain.errors import REVERTS, ChainError, refusal

if TYPE_CHECKING:
    from refiner.chain.connection import Chain

EMBEDDED_GAS_LIMIT = 10_000_000
#: Seconds a sent transaction may be unknown to the node before it counts as dropped.
DROPPED_AFTER = 5.0


class Backend:
    """Any JSON-RPC node: transactions are simulated first (the gas estimate), receipts polled, and it
    has no dev-chain helpers."""

    #: What answers, for people ("embedded" | "anvil" | "rpc"); code asks the flags below.
    kind: ClassVar[str] = "rpc"
    #: Whether it mines, moves its clock and funds accounts when told.
    dev_chain: ClassVar[bool] = False
    #: Whether blocks (and so time) come only when somebody asks for them.
    manual_clock: ClassVar[bool] = False

    def transact(
        self, chain: Chain, sender: LocalAccount, call: ContractFunction, params: TxParams
    ) -> TxReceipt:
        try:
            # estimate on the pending block, where the transaction will run: on the latest block a
            # storage slot written earlier in that block (e.g. a stake checkpoint) looks cheaper
            estimate = call.estimate_gas(dict(params), block_identifier="pending")  # type: ignore[arg-type]
            params["gas"] = estimate * 6 // 5
            tx = call.build_transaction(chain.fill(sender, params))
        except REVERTS as exc:
            raise refusal(exc) from None
        return chain.send(sender, tx)

    def receipt(self, w3: Web3, tx_hash: Any, timeout: float = 300.0, poll: float = 0.2) -> TxReceipt:
        """Wait for the transaction to be mined. A transaction the node no longer knows (a restarted dev
        node forgets its mempool) raises :class:`ChainError` after a few seconds instead of hanging: the
        caller re-reads the state and decides again."""
        deadline = time.monotonic() + timeout
        unknown_since: float | None = None
        while True:
            try:
                return w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                pass
            now = time.monotonic()
            try:
                w3.eth.get_transaction(tx_hash)
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

    def increase_time(self, w3: Web3, seconds: int) -> None:
        raise ChainError("time travel needs a dev chain (embedded or anvil)")

    def mine(self, w3: Web3, blocks: int) -> None:
        raise ChainError("mining on demand needs a dev chain (embedded or anvil)")


class Anvil(Backend):
    """A local anvil node: a JSON-RPC node with anvil's dev methods."""

    kind = "anvil"
    dev_chain = True

    def increase_time(self, w3: Web3, seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def mine(self, w3: Web3, blocks: int) -> None:
        w3.provider.make_request("anvil_mine", [blocks])  # type: ignore[arg-type]


class Embedded(Backend):
    """The in-process EVM (eth-tester over py-evm): mined on send, its clock moved by hand."""

    kind = "embedded"
    dev_chain = True
    manual_clock = True

    def transact(
        self, chain: Chain, sender: LocalAccount, call: ContractFunction, params: TxParams
    ) -> TxReceipt:
        # py-evm's gas estimate is a binary search (~15 executions) and a trial eth_call one more: instead
        # the transaction runs once with a generous limit (only the gas used is paid) and, if it reverted,
        # the chain is put back as it was, so that a refusal costs neither gas nor a nonce.
        params["gas"] = EMBEDDED_GAS_LIMIT
        testing = _testing(chain.w3)
        with chain.lock:  # nobody else's transaction may land between the snapshot and a revert
            snapshot = testing.snapshot()
            tx = call.build_transaction(chain.fill(sender, params))
            signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
            if receipt["status"] == 1:
                chain.gas_used += int(receipt["gasUsed"])
                return receipt
            testing.revert(snapshot)
            try:  # the same call again, as a simulation on the restored state, for the contract's error
                call.call(dict(params), block_identifier="pending")  # type: ignore[arg-type]
            except REVERTS as exc:
                raise refusal(exc) from None
        raise ChainError(f"transaction {tx_hash.hex()} reverted (undone); its simulation did not")

    def receipt(self, w3: Web3, tx_hash: Any, timeout: float = 300.0, poll: float = 0.2) -> TxReceipt:
        return w3.eth.get_transaction_receipt(tx_hash)  # mined on send: one lookup instead of polling

    def increase_time(self, w3: Web3, seconds: int) -> None:
        testing = _testing(w3)
        # the pending block carries the wall clock once the latest one is older: a jump that would land
        # before it is refused ("traveling backwards in time"), so the clock moves at least `seconds`
        latest = int(w3.eth.get_block("latest")["timestamp"])
        pending = int(w3.eth.get_block("pending")["timestamp"])
        testing.timeTravel(max(latest + seconds, pending))
        testing.mine()

    def mine(self, w3: Web3, blocks: int) -> None:
        _testing(w3).mine(blocks)


def _testing(w3: Web3) -> Any:
    # web3 attaches the `testing` module at runtime; its methods map to evm_* / testing_* RPCs.
    return w3.testing  # type: ignore[attr-defined]
