"""A validator's private sortition for a task (paper 2.3.3, Algorand): evaluate the VRF on the task's
seed, count the seats its stake wins, and produce the proof `claimSeat` verifies."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from refiner.chain.errors import ChainError
from refiner.chain.registry import Registry
from refiner.chain.task import Task
from refiner.sortition import Proof, VrfKey, committee_seats, output, prove


@dataclass(frozen=True)
class Ticket:
    """The outcome of one validator's sortition for one task."""

    proof: Proof
    seats: int
    stake_units: int
    total_units: int
    tau: int


def wait_for_seed(task: Task, timeout: float = 60.0, sender: LocalAccount | None = None) -> int:
    """The task's sortition seed, once a block after the seed block exists (a claim simulated on the
    latest block must see `block.number > seedBlock`). On a dev chain it mines empty blocks; on another
    node it waits for them."""
    deadline = time.monotonic() + timeout
    while (seed := task.sortition_seed()) is None or task.chain.w3.eth.block_number <= task.seed_block():
        if task.chain.w3.eth.block_number - task.seed_block() >= 256:  # its hash is gone: none will come
            if sender is None:
                raise ChainError(
                    f"the seed block {task.seed_block()} of {task.address} is more than 256 blocks old: "
                    "somebody must call fixSeed to schedule a new one (pass a sender to do it)"
                )
            task.fix_seed(sender)
        elif task.chain.is_dev_chain:
            task.chain.mine(max(1, task.seed_block() + 1 - task.chain.w3.eth.block_number))
        elif time.monotonic() > deadline:
            raise ChainError(f"seed block {task.seed_block()} of {task.address} not mined in {timeout} s")
        else:
            time.sleep(1.0)
    return seed


def draw(
    task: Task, registry: Registry, validator: str, key: VrfKey, sender: LocalAccount | None = None
) -> Ticket:
    """Evaluate `validator`'s sortition for `task` (stakes as bonded at the task's snapshot block, the
    one before its seed epoch began), as `claimSeat` recounts it. With a `sender`, a seed whose block hash
    has aged out unfixed moves the task to a later epoch (`fixSeed`)."""
    seed = wait_for_seed(task, sender=sender)
    snapshot = task.snapshot_block()
    unit = registry.stake_unit()
    stake = registry.stake_at(validator, snapshot) // unit
    total = registry.total_stake_at(snapshot) // unit
    tau = task.config().committee_size
    proof = prove(key, seed)
    won = committee_seats(output(proof), stake, total, tau) if stake else 0
    return Ticket(proof, won, stake, total, tau)
