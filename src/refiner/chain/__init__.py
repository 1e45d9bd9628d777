"""The on-chain half of Refiner: contract build, connection, typed wrappers, Merkle proofs."""

from refiner.chain.accounts import demo_account, public_key_bytes
from refiner.chain.connection import EMBEDDED, Chain
from refiner.chain.contract import Event, TxResult
from refiner.chain.errors import ChainError, ContractRevert
from refiner.chain.merkle import ResultsTree
from refiner.chain.registry import Registry
from refiner.chain.task import Task
from refiner.chain.types import (
    Aggregation,
    Durations,
    Manifest,
    RoundInfo,
    Status,
    TaskConfig,
    TerminationReason,
    WorkerResult,
)

__all__ = [
    "EMBEDDED",
    "Aggregation",
    "Chain",
    "ChainError",
    "ContractRevert",
    "Durations",
    "Event",
    "Manifest",
    "Registry",
    "ResultsTree",
    "RoundInfo",
    "Status",
    "Task",
    "TaskConfig",
    "TerminationReason",
    "TxResult",
    "WorkerResult",
    "demo_account",
    "public_key_bytes",
]
