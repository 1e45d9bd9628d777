"""Base of the typed contract wrappers: send a call, return its gas and decoded events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import event_abi_to_log_topic
from web3.contract import Contract
from web3.types import LogReceipt, TxReceipt

from refiner.chain.build import load_artifact
from refiner.chain.connection import Chain


@dataclass(frozen=True)
class Event:
    """A decoded event; where it was logged is filled in when known (None for hand-built events)."""

    name: str
    args: dict[str, Any]
    block_number: int | None = None
    tx_hash: str | None = None  # 0x-prefixed
    log_index: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self.args[key]


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: its hash, gas used and the events the wrapped contract emitted."""

    tx_hash: str
    gas_used: int
    events: list[Event]
    receipt: TxReceipt

    def event(self, name: str) -> Event:
        """The only event called `name`; raises if there is none or more than one."""
        found = [e for e in self.events if e.name == name]
        if len(found) != 1:
            raise LookupError(
                f"expected one {name} event, found {len(found)} in {[e.name for e in self.events]}"
            )
        return found[0]

    def names(self) -> list[str]:
        return [e.name for e in self.events]


class ContractWrapper:
    """A deployed contract whose methods are called by name and whose events come back decoded."""

    ARTIFACT = ""

    def __init__(self, chain: Chain, address: str, from_block: int = 0) -> None:
        self.chain = chain
        #: The first block worth scanning for this contract's events (its deployment block, if known).
        self.from_block = from_block
        artifact = load_artifact(self.ARTIFACT)
        self.address: ChecksumAddress = chain.w3.to_checksum_address(address)
        self.contract: Contract = chain.w3.eth.contract(address=self.address, abi=artifact.abi)
        self._events_by_topic = {
            event_abi_to_log_topic(item): item["name"]  # type: ignore[arg-type]
            for item in artifact.abi
            if item["type"] == "event"
        }

    def _send(self, sender: LocalAccount, function: str, *args: Any, value: int = 0) -> TxResult:
        call = self.contract.functions[function](*args)
        receipt = self.chain.transact(sender, call, value=value)
        return TxResult(
            receipt["transactionHash"].hex(), receipt["gasUsed"], self.decode_events(receipt), receipt
        )

    def _call(self, function: str, *args: Any) -> Any:
        def ask() -> Any:
            return self.contract.functions[function](*args).call()

        views = self.chain.views
        if views is None:
            return ask()
        key = (self.address, function, args)
        try:
            hash(key)
        except TypeError:  # a list argument
            return ask()
        return views.answer(key, ask)

    def decode_events(self, receipt: TxReceipt) -> list[Event]:
        return self._decode(receipt["logs"])

    def all_events(self, from_block: int = 0) -> list[Event]:
        """Every event of this contract since `from_block`, in chain order, from one log query (cheaper
        than one query per event name, notably on the embedded chain, which scans every block per query)."""
        return self._decode(self.chain.w3.eth.get_logs({"address": self.address, "fromBlock": from_block}))

    def _decode(self, logs: Sequence[LogReceipt]) -> list[Event]:
        events: list[Event] = []
        for log in logs:
            if log["address"] != self.address or not log["topics"]:
                continue
            name = self._events_by_topic.get(bytes(log["topics"][0]))
            if name is None:
                continue
            decoded = self.contract.events[name]().process_log(log)
            events.append(_event(name, decoded))
        return events

    def get_events(self, name: str, from_block: int = 0, **filters: Any) -> list[Event]:
        """Events `name` emitted by this contract since `from_block`, optionally filtered by indexed args."""
        logs = self.contract.events[name]().get_logs(from_block=from_block, argument_filters=filters or None)
        return [_event(name, log) for log in logs]


def _event(name: str, log: Any) -> Event:
    """An Event from a decoded web3 log (EventData), with its position on chain."""
    tx_hash = bytes(log["transactionHash"]).hex()
    return Event(
        name,
        dict(log["args"]),
        int(log["blockNumber"]),
        "0x" + tx_hash.removeprefix("0x"),
        int(log["logIndex"]),
    )
