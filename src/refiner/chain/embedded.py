"""The embedded chain: eth-tester over py-evm, with an index of its event logs.

eth-tester answers ``eth_getLogs`` by walking every block of the asked range and rebuilding each
transaction's receipt, every time; a participant that looks up one event of the current round pays for
the whole round's blocks, and N workers each doing so make a round quadratic in N (measured in
docs/benchmarks.md: 528 s of a 1,043 s round with 100 workers). :class:`LogIndex` reads each mined block's
logs once, keeps them in eth-tester's own raw form and answers every query from memory with eth-tester's
own matching rules, so results are identical, in the same order.

A block that is no longer on the chain (eth-tester's ``revert_to_snapshot`` replaces blocks) is noticed
by its hash and re-read, with everything after it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.serializers import serialize_transaction_receipt
from eth_tester.utils.filters import Filter, check_if_log_matches
from web3 import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS


class LogIndex:
    """Raw log entries per mined block, with the block hashes they were read under."""

    def __init__(self) -> None:
        self._logs: list[list[Any]] = []  # by block number
        self._hashes: list[str] = []

    def __call__(self, tester: EthereumTester, params: Any) -> list[Any]:
        """The ``eth_getLogs`` endpoint: same validation, bounds and matching as eth-tester's own."""
        given = dict(params[0])
        query = {key: given.pop(key, None) for key in ("from_block", "to_block", "address", "topics")}
        if given:  # e.g. a block hash: eth-tester's own answer (its error) for what it does not support
            return list(tester.get_logs(**params[0]))
        tester.validator.validate_inbound_filter_params(**query)
        from_block, to_block, addresses, topics = tester.normalizer.normalize_inbound_filter_params(**query)
        lower = self._bound(tester, "latest" if from_block is None else from_block)
        upper = self._bound(tester, "latest" if to_block is None else to_block)
        self._sync(tester)
        matching = Filter(
            filter_params=None,
            filter_fn=partial(
                check_if_log_matches,
                from_block=from_block,
                to_block=to_block,
                addresses=addresses,
                topics=topics,
            ),
        )
        for number in range(max(lower, 0), min(upper, len(self._logs) - 1) + 1):
            matching.add(*self._logs[number])
        return [tester.normalizer.normalize_outbound_log_entry(entry) for entry in matching.get_all()]

    @staticmethod
    def _bound(tester: EthereumTester, block: int | str) -> int:
        return block if isinstance(block, int) else int(tester.get_block_by_number(block)["number"])

    def _sync(self, tester: EthereumTester) -> None:
        """Drop blocks that left the chain, then read the blocks mined since the last query."""
        head = int(tester.get_block_by_number("latest")["number"])
        top = min(head, len(self._logs) - 1)
        while top >= 0 and str(tester.get_block_by_number(top)["hash"]) != self._hashes[top]:
            top -= 1
        del self._logs[top + 1 :], self._hashes[top + 1 :]
        for number in range(top + 1, head + 1):
            block = tester.get_block_by_number(number)
            entries = []
            for receipt in _receipts(tester, number, block["transactions"]):
                for log in receipt["logs"]:
                    entries.append(tester.normalizer.normalize_inbound_log_entry(log))
            self._logs.append(entries)
            self._hashes.append(str(block["hash"]))


def _receipts(tester: EthereumTester, number: int, tx_hashes: Sequence[Any]) -> Iterator[Any]:
    """A mined block's receipts. eth-tester finds a receipt by scanning back from the head for its
    transaction (O(chain length) each); with the py-evm backend the block's receipts are read at once."""
    backend = tester.backend
    if not isinstance(backend, PyEVMBackend):
        yield from (tester.get_transaction_receipt(h) for h in tx_hashes)
        return
    block = backend.chain.get_canonical_block_by_number(number)
    receipts = block.get_receipts(backend.chain.chaindb)
    vm = backend.chain.get_vm()
    for index, transaction in enumerate(block.transactions):
        raw = serialize_transaction_receipt(block, receipts, transaction, index, False, vm)
        yield tester.normalizer.normalize_outbound_receipt(raw)


def embedded_provider() -> EthereumTesterProvider:
    """A fresh in-process chain whose ``eth_getLogs`` is served from a :class:`LogIndex`."""
    endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
    endpoints["eth"]["getLogs"] = LogIndex()
    return EthereumTesterProvider(api_endpoints=endpoints)
