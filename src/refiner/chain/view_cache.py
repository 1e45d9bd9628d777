"""Answers repeated view calls on the embedded chain from memory while its state has not changed.

On the embedded chain every request goes through this process's one `Web3`, so a middleware sees everything
that could change the state: a transaction, a clock jump, a mined block, a snapshot's revert. A view called
against the latest block is a function of that state and its arguments alone (eth-tester runs it on the
latest block's header), so its answer holds until the next request that is not a plain read. A
simulation's participants ask the same views (status, round, deadline) many times between two
transactions: with 20 workers and 8 validators, 881 view calls took ~11 s of a 31 s round, half of it in
web3's encoding and decoding, which a hit skips too. Only installed on the embedded chain: on a node, other
senders change the state unseen.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Hashable
from typing import Any

from eth_utils.toolz import curry
from web3.middleware.base import Web3MiddlewareBuilder
from web3.types import RPCEndpoint

#: Requests that read the chain and change nothing; any other request may change it.
READS = frozenset(
    {
        "eth_accounts",
        "eth_blockNumber",
        "eth_call",
        "eth_chainId",
        "eth_estimateGas",
        "eth_feeHistory",
        "eth_gasPrice",
        "eth_getBalance",
        "eth_getBlockByHash",
        "eth_getBlockByNumber",
        "eth_getCode",
        "eth_getLogs",
        "eth_getStorageAt",
        "eth_getTransactionByHash",
        "eth_getTransactionCount",
        "eth_getTransactionReceipt",
        "eth_maxPriorityFeePerGas",
        "net_version",
        "web3_clientVersion",
    }
)
#: Most answers kept (a bound on memory: the cache is emptied when it is full).
MAX_ANSWERS = 4096


class ViewCache:
    """Views' decoded answers, valid until the chain's state may have changed."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, Any] = {}
        self._generation = 0
        self._lock = threading.Lock()
        #: views answered from memory and asked of the chain (for tests and benches)
        self.hits = self.misses = 0

    def changed(self) -> None:
        """The state may have changed: forget every answer."""
        with self._lock:
            self._generation += 1
            self._answers.clear()

    def answer(self, key: Hashable, ask: Callable[[], Any]) -> Any:
        """The answer kept for `key`, or `ask()`'s, kept unless the state changed meanwhile. A copy is
        returned each time (answers hold lists), so that a caller's changes stay its own."""
        with self._lock:
            generation, found = self._generation, key in self._answers
            value = self._answers.get(key)
        if found:
            self.hits += 1
            return copy.deepcopy(value)
        self.misses += 1
        value = ask()
        with self._lock:
            if generation == self._generation:
                if len(self._answers) >= MAX_ANSWERS:
                    self._answers.clear()
                self._answers[key] = copy.deepcopy(value)
        return value


class WatchState(Web3MiddlewareBuilder):
    """Tells a `ViewCache` of every request that is not a plain read, before it is sent."""

    cache: ViewCache

    @staticmethod
    @curry  # type: ignore[untyped-decorator]
    def build(cache: ViewCache, w3: Any) -> WatchState:
        middleware = WatchState(w3)
        middleware.cache = cache
        return middleware

    def request_processor(self, method: RPCEndpoint, params: Any) -> Any:
        if method not in READS:
            self.cache.changed()
        return method, params

    def response_processor(self, method: RPCEndpoint, response: Any) -> Any:
        if method not in READS:  # and after it: nobody may keep an answer computed while it ran
            self.cache.changed()
        return response
