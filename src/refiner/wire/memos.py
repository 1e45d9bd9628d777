"""A validator's commitment salt and memo: secrets only its own key derives, for one task and round, so
that a restarted validator rebuilds them and nobody else can."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from refiner.storage import Handle


def salt_for(account: LocalAccount, task: str, round_: int) -> bytes:
    """A commitment salt only `account` can compute and can recompute after a restart."""
    return keccak(b"refiner-salt" + bytes(account.key) + bytes.fromhex(task[2:]) + round_.to_bytes(4, "big"))


def memo_pad(account: LocalAccount, task: str, round_: int) -> bytes:
    """The one-time pad a validator XORs its details handle with in its commitment's memo: only it can
    read the memo back, and only for this task and round."""
    return keccak(b"refiner-memo" + bytes(account.key) + bytes.fromhex(task[2:]) + round_.to_bytes(4, "big"))


def seal_memo(account: LocalAccount, task: str, round_: int, details: Handle) -> bytes:
    digest = bytes(details)[2:]  # the sha2-256 digest of the 34-byte multihash 0x12 0x20 <digest>
    return bytes(a ^ b for a, b in zip(digest, memo_pad(account, task, round_), strict=True))


def open_memo(account: LocalAccount, task: str, round_: int, memo: bytes) -> Handle:
    digest = bytes(a ^ b for a, b in zip(memo, memo_pad(account, task, round_), strict=True))
    return Handle.from_bytes(b"\x12\x20" + digest)
