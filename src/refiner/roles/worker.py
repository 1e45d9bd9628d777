"""The worker (paper 2.1, 2.3.5): trains the global model on its private data and is paid by contribution."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from refiner.chain import ContractRevert, Task, TxResult
from refiner.fl.data import Dataset
from refiner.fl.models import State, deserialize, serialize
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.roles.participant import (
    Participant,
    consensus_details,
    description_of,
    model_of,
    round_inputs,
)
from refiner.sharing import Context, retrieve, share


class WorkerBehaviour(StrEnum):
    """How a worker behaves. A shuffled-label worker is honest code on bad data (paper 3): its dataset is
    built with shuffled labels; the behaviour names it for reports."""

    HONEST = "honest"
    SHUFFLED_LABELS = "shuffled-labels"
    FREE_RIDER = "free-rider"


@dataclass
class Worker(Participant):
    data: Dataset
    behaviour: WorkerBehaviour = WorkerBehaviour.HONEST
    seed: int = 0

    def register(self) -> TxResult:
        return self.registry.register_worker(self.account)

    def sign_up(self, task: Task) -> TxResult:
        return task.sign_up(self.account)

    def train(self, task: Task, progress: Callable[[int, int], None] | None = None) -> State:
        """Fetch and decrypt this round's global model and update it on the local data (paper 2.3.5)."""
        round_ = task.current_round()
        description = description_of(task)
        factory, spec = model_of(description)
        handles = round_inputs(task, round_)
        plaintext = retrieve(
            self.store,
            handles["modelHandle"],
            handles["modelKeysHandle"],
            Context(task.address, round_, task.requester(), "model"),
            self.account,
            max_bytes=spec.max_bytes,
        )
        global_state = deserialize(plaintext, spec)
        if self.behaviour is WorkerBehaviour.FREE_RIDER:
            return free_ride(global_state)
        config = TrainingConfig(
            epochs=description.epochs,
            batch_size=description.batch_size,
            lr=description.lr,
            mu=task.config().mu,
            seed=self.seed + round_,
        )
        return train_local(factory, global_state, self.data, config, progress)

    def submit_training_results(self, task: Task, state: State) -> TxResult:
        """Share the local model with the committee (and the requester, for audits) and publish its handles
        (SubmitTrainingResults)."""
        round_ = task.current_round()
        recipients = {v: self.registry.validator_key(v) for v in task.committee()}
        # the requester too: it may re-run the committee's evaluation (`refiner audit`)
        requester = task.requester()
        recipients[requester] = description_of(task).requester_key(requester)
        model_h, keys_h = share(
            self.store, serialize(state), Context(task.address, round_, self.address, "update"), recipients
        )
        return task.submit_training_results(self.account, bytes(model_h), bytes(keys_h), len(self.data))

    def claim_reward(self, task: Task, round_: int) -> int:
        """Claim this round's reward with a Merkle proof of the consensus leaf; returns wei received."""
        _, details = consensus_details(self, task, round_)
        tree = details.tree()
        try:
            result = tree.result_of(self.address)
        except KeyError:
            return 0
        if not result.paid:
            return 0
        try:
            res = task.claim_reward(self.account, round_, result, tree.proof(self.address))
        except ContractRevert as exc:
            if exc.error == "AlreadyClaimed":
                return 0
            raise
        return int(res.event("RewardClaimed")["amount"])
