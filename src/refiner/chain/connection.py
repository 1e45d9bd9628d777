"""Connect to a chain by URL and send signed transactions to it.

``embedded`` (the default) is an in-process EVM (eth-tester over py-evm); ``http://…``/``https://…`` and
an IPC path are any JSON-RPC node (e.g. a local anvil). Transactions are always signed locally with the
participant's key and sent raw, so the same code runs on any node.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxParams, TxReceipt, Wei

from refiner.chain.backends import Anvil, Backend, Embedded
from refiner.chain.build import Artifact
from refiner.chain.embedded import embedded_provider
from refiner.chain.errors import REVERTS, ChainError, refusal
from refiner.chain.view_cache import ViewCache, WatchState

EMBEDDED = "embedded"


@dataclass
class Chain:
    """A web3 connection plus what Refiner needs around it: signing, time control, funding. How the node
    is driven (sending, receipts, dev-chain helpers) is its `backend`'s business."""

    w3: Web3
    url: str
    backend: Backend
    #: Gas used by every transaction this connection sent (for reports).
    gas_used: int = field(init=False, default=0)
    #: Held while a transaction is sent on the embedded chain; share it to serialise other requests.
    lock: threading.RLock = field(init=False, default_factory=threading.RLock)
    _chain_id: int = field(init=False, default=0)
    #: Views' answers kept while the state stands still (the embedded chain only: see `view_cache`).
    views: ViewCache | None = field(default=None, kw_only=True)

    @classmethod
    def connect(cls, url: str = EMBEDDED) -> Chain:
        if url in (EMBEDDED, "eth-tester://", "eth-tester"):
            w3 = Web3(embedded_provider())
            # calls without a sender would each ask eth_accounts twice (web3's eth-tester middleware)
            w3.eth.default_account = w3.eth.accounts[0]
            views = ViewCache()
            w3.middleware_onion.add(WatchState.build(views), "watch_state")
            return cls(w3, EMBEDDED, Embedded(), views=views)
        if url.startswith(("http://", "https://")):
            w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        elif url.startswith("ipc://") or url.endswith(".ipc"):
            w3 = Web3(Web3.IPCProvider(url.removeprefix("ipc://")))
        else:
            hint = f" (did you mean http://{url}?)" if re.fullmatch(r"[\w.-]+:\d+", url) else ""
            raise ValueError(
                f"unsupported chain URL {url!r}: use 'embedded', http(s)://… or a .ipc path{hint}"
            )
        if not w3.is_connected():
            raise ChainError(f"no Ethereum JSON-RPC node answers at {url}")
        version = str(w3.client_version).lower()
        return cls(w3, url, Anvil() if "anvil" in version else Backend())

    @property
    def kind(self) -> str:
        """What answers: "embedded" | "anvil" | "rpc" (for people: code asks `is_dev_chain` and
        `manual_clock`)."""
        return self.backend.kind

    @property
    def is_dev_chain(self) -> bool:
        """Whether this chain mines, moves its clock and funds accounts when told (embedded or anvil)."""
        return self.backend.dev_chain

    @property
    def manual_clock(self) -> bool:
        """Whether blocks (and so time) come only when somebody asks for them (the embedded chain): its
        clock is the latest block's time, not the wall clock."""
        return self.backend.manual_clock

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
        return self.backend.transact(self, sender, call, {"from": sender.address, "value": Wei(value)})

    def deploy(
        self, sender: LocalAccount, artifact: Artifact, *args: Any, value: int = 0
    ) -> tuple[ChecksumAddress, TxReceipt]:
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        try:
            tx = factory.constructor(*args).build_transaction(
                self.fill(sender, {"from": sender.address, "value": Wei(value)})
            )
        except REVERTS as exc:
            raise refusal(exc) from None
        receipt = self.send(sender, tx)
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deployment of {artifact.name} returned no contract address")
        return address, receipt

    def send_ether(self, sender: LocalAccount, to: str, value: int) -> TxReceipt:
        tx: TxParams = {"from": sender.address, "to": Web3.to_checksum_address(to), "value": Wei(value)}
        tx = self.fill(sender, tx)
        tx["gas"] = 21_000
        return self.send(sender, tx)

    def fill(self, sender: LocalAccount, params: TxParams) -> TxParams:
        """`params` with `sender`'s next nonce and this chain's id."""
        params["nonce"] = self.w3.eth.get_transaction_count(sender.address, "pending")
        params["chainId"] = self.chain_id
        return params

    def send(self, sender: LocalAccount, tx: TxParams) -> TxReceipt:
        """Sign and send a filled transaction, and wait for its receipt; a revert on chain raises."""
        signed = sender.sign_transaction(tx)  # type: ignore[arg-type]
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.backend.receipt(self.w3, tx_hash)
        self.gas_used += int(receipt["gasUsed"])
        if receipt["status"] != 1:
            raise ChainError(f"transaction {tx_hash.hex()} reverted on chain (gas used {receipt['gasUsed']})")
        return receipt

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
        self.backend.increase_time(self.w3, seconds)

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (dev chains only), e.g. to reach a task's seed block."""
        self.backend.mine(self.w3, blocks)

    def snapshot(self) -> Any:
        return self.w3.testing.snapshot()  # type: ignore[attr-defined]

    def revert(self, snapshot_id: Any) -> None:
        self.w3.testing.revert(snapshot_id)  # type: ignore[attr-defined]
