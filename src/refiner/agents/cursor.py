"""Follow contract logs block by block, surviving node restarts and reorganisations.

A :class:`BlockCursor` remembers the last block it delivered logs for and that block's hash. Each
:meth:`~BlockCursor.poll` first checks that the remembered hashes are still on the chain: if a reorg
replaced them (or a restarted dev node lost blocks), it rewinds to the last block that is still the same
and delivers the logs from there again. Consumers must therefore be idempotent, which Refiner's agents
are: they only use logs as a wake-up call and read the contract's state before acting.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3
from web3.exceptions import BlockNotFound
from web3.types import FilterParams, LogReceipt

from refiner.chain.connection import Chain

log = logging.getLogger(__name__)

#: Blocks whose hashes are kept to detect a reorganisation (dev chains and L1 reorgs are far shallower).
REORG_WINDOW = 64
#: Largest block range asked for in one eth_getLogs (public nodes cap it, commonly at 1k–10k blocks).
MAX_RANGE = 2_000


@dataclass
class BlockCursor:
    """Delivers the logs of `addresses` from `start_block` on, at most up to head − `confirmations`."""

    chain: Chain
    addresses: list[str]
    start_block: int = 0
    confirmations: int = 0
    _next: int = field(init=False)
    _hashes: dict[int, bytes | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._next = self.start_block

    @property
    def next_block(self) -> int:
        """The first block not delivered yet."""
        return self._next

    def add(self, address: str, from_block: int | None = None) -> None:
        """Also follow `address` (e.g. a newly registered task); `from_block` rewinds to catch its past."""
        if address not in self.addresses:
            self.addresses.append(address)
        if from_block is not None and from_block < self._next:
            self._rewind(from_block)

    def poll(self) -> list[LogReceipt]:
        """Logs of the followed contracts in blocks not delivered yet (after any reorg, again)."""
        head = self.chain.w3.eth.block_number - self.confirmations
        self._check_reorg(head)
        if head < self._next or not self.addresses:
            return []
        to_block = min(head, self._next + MAX_RANGE - 1)
        addresses = [Web3.to_checksum_address(a) for a in self.addresses]
        params: FilterParams = {"fromBlock": self._next, "toBlock": to_block, "address": addresses}
        logs = list(self.chain.w3.eth.get_logs(params))
        self._remember(to_block)
        self._next = to_block + 1
        return logs

    def _check_reorg(self, head: int) -> None:
        if not self._hashes:
            return
        for number in sorted(self._hashes, reverse=True):
            if number <= head and self._hash_of(number) == self._hashes[number]:
                if number + 1 < self._next:
                    log.warning("chain reorganised: blocks after %d changed; re-reading them", number)
                    self._rewind(number + 1)
                return
        oldest = min(self._hashes)
        log.warning(
            "chain reorganised or was reset below block %d; re-reading from %d", oldest, self.start_block
        )
        self._rewind(self.start_block)

    def _rewind(self, block: int) -> None:
        self._next = block
        self._hashes = {n: h for n, h in self._hashes.items() if n < block}

    def _remember(self, block: int) -> None:
        self._hashes[block] = self._hash_of(block)
        for number in [n for n in self._hashes if n <= block - REORG_WINDOW]:
            del self._hashes[number]

    def _hash_of(self, number: int) -> bytes | None:
        try:
            block: Any = self.chain.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return bytes(block["hash"])
