"""A validator's salt and memo: derived from its own key for one task and round, rebuilt after a restart,
unreadable to anybody else."""

from __future__ import annotations

import hashlib

from refiner.chain import demo_account
from refiner.storage import Handle
from refiner.wire.memos import open_memo, salt_for, seal_memo

TASK, OTHER_TASK = "0x" + "ab" * 20, "0x" + "cd" * 20


def test_the_salt_is_the_validator_s_own_for_one_task_and_round() -> None:
    me, them = demo_account("validator-0"), demo_account("validator-1")
    assert salt_for(me, TASK, 1) == salt_for(demo_account("validator-0"), TASK, 1)  # rebuilt after a restart
    others = {salt_for(them, TASK, 1), salt_for(me, OTHER_TASK, 1), salt_for(me, TASK, 2)}
    assert salt_for(me, TASK, 1) not in others and len(others) == 3


def test_a_memo_opens_only_with_its_sealer_s_key_task_and_round() -> None:
    me, them = demo_account("validator-0"), demo_account("validator-1")
    details = Handle.from_bytes(b"\x12\x20" + hashlib.sha256(b"details").digest())
    memo = seal_memo(me, TASK, 3, details)
    assert len(memo) == 32 and memo != bytes(details)[2:]
    assert open_memo(me, TASK, 3, memo) == details
    assert open_memo(them, TASK, 3, memo) != details
    assert open_memo(me, TASK, 4, memo) != details
