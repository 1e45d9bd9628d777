"""The requester (paper 2.1): posts a task, recruits, prepares each round, pays, retrieves the model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from refiner.chain import Task, TaskConfig, TxResult, public_key_bytes
from refiner.fl.data import Dataset
from refiner.fl.models import ModelValidationError, State, deserialize, model_digest, serialize
from refiner.roles.participant import Participant
from refiner.sharing import Context, SharingError, retrieve, share
from refiner.storage import Handle, StorageError
from refiner.wire.datasets import dataset_to_bytes
from refiner.wire.details import ProtocolError, revealed_details
from refiner.wire.reads import description_of, model_of
from refiner.wire.spec import TaskDescription


@dataclass
class Requester(Participant):
    def create_task(self, config: TaskConfig, description: TaskDescription | None = None) -> Task:
        """Deploy the task contract and register it in the registry (paper 2.3.2: RegisterTask)."""
        description = description or TaskDescription(public_key_bytes(self.account).hex())
        config = replace(config, description=description.to_json())
        task = Task.deploy(self.chain, self.account, self.registry.address, config)
        self.registry.register_task(self.account, task.address)
        return task

    def open_recruitment(self, task: Task) -> TxResult:
        return task.open_recruitment(self.account)

    def close_recruitment(self, task: Task) -> TxResult:
        return task.close_recruitment(self.account)

    def start_round(self, task: Task, global_state: State, validation: Dataset) -> TxResult:
        """Share the global model with workers and committee and the validation set with the committee,
        then start the round, topping the budget up to the round's rewards (paper 2.3.4)."""
        round_ = task.current_round() + 1
        workers = {w: self.registry.public_key(w) for w in task.workers()}
        committee = {v: self.registry.public_key(v) for v in task.committee()}
        me = {self.address: public_key_bytes(self.account)}  # so that it can audit the round later
        model_h, model_k = share(
            self.store,
            serialize(global_state),
            Context(task.address, round_, self.address, "model"),
            {**workers, **committee, **me},
        )
        val_h, val_k = share(
            self.store,
            dataset_to_bytes(validation),
            Context(task.address, round_, self.address, "validation"),
            {**committee, **me},
        )
        return task.start_round(
            self.account, bytes(model_h), bytes(model_k), bytes(val_h), bytes(val_k), value=shortfall(task)
        )

    def finalize_round(self, task: Task) -> TxResult:
        return task.finalize_round(self.account)

    def retrieve_model(self, task: Task, round_: int) -> State:
        """The consensus aggregate of `round_`: the first agreeing validator's encrypted copy whose details
        are well formed, that opens, and whose digest equals the consensus digest (paper 2.3.8); any
        agreeing validator's missing or spoiled files only make it try the next one."""
        key = task.round_info(round_).consensus_key
        _, spec = model_of(description_of(task), self.models)
        for validator, (manifest, salt) in task.reveals(round_).items():
            if manifest.vote_key() != key:
                continue
            try:
                details = revealed_details(self.store, task.address, round_, validator, manifest, salt)
                data = retrieve(
                    self.store,
                    Handle.from_bytes(manifest.aggregate_handle),
                    Handle.parse(details.aggregate_keys_handle),
                    Context(task.address, round_, validator, "aggregate"),
                    self.account,
                    max_bytes=spec.max_bytes,
                )
                state = deserialize(data, spec)
            except (StorageError, SharingError, ModelValidationError, ProtocolError, ValueError):
                continue
            if model_digest(state) == manifest.model_digest:
                return state
        raise ProtocolError(
            f"no agreeing validator's aggregate of round {round_} matches the consensus digest"
        )

    def stop_training(self, task: Task) -> TxResult:
        return task.stop_training(self.account)

    def withdraw_budget(self, task: Task) -> TxResult | None:
        amount = task.budget()
        return task.withdraw(self.account, amount) if amount else None


def shortfall(task: Task) -> int:
    """What the next round's rewards take from the requester's account beyond the task's budget (wei;
    `start_round` pays it with the call)."""
    cfg = task.config()
    return max(0, cfg.worker_reward + cfg.validator_reward - task.budget())
