"""The worker (paper 2.1, 2.3.5): trains the global model on its private data and is paid by contribution.

This is the honest worker only. The behaviours of the adversary study — bad data (shuffled labels, a
targeted label flip), poisoned updates (random weights, sign flip, scaled update), and cheating on effort
or size (free rider, inflated sample count, replays, extrapolation) — are named by ``WorkerBehaviour`` and
are subclasses in :mod:`refiner.adversary.workers`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from refiner.chain import ContractRevert, Task, TxResult
from refiner.fl.data import Dataset
from refiner.fl.models import State, deserialize, resolve_model, serialize
from refiner.fl.training import TrainingConfig, train_local
from refiner.roles.participant import Participant
from refiner.sharing import Context, retrieve, share
from refiner.wire.details import ProtocolError
from refiner.wire.reads import consensus_details, description_of, model_of, round_inputs


class WorkerBehaviour(StrEnum):
    """How a worker behaves.

    A shuffled-label worker is honest code on bad data (paper 3): its dataset is built with shuffled
    labels by whoever creates it; the behaviour names it for reports. Every other behaviour is carried
    out by the worker itself, with the parameters in ``Worker.attack``:

    * ``targeted-label-flip``: trains honestly on its data with every ``flip_source`` label replaced by
      ``flip_target`` (e.g. 7 → 1).
    * ``free-rider``: submits the global model untrained.
    * ``random-weights``: submits Gaussian noise N(0, ``noise_std``²) instead of a model.
    * ``sign-flip``: trains honestly, submits ``w_g − (w_l − w_g)``.
    * ``scaled-update``: trains honestly, submits ``w_g + scale·(w_l − w_g)``.
    * ``inflated-samples``: trains and submits honestly but claims ``inflation`` × its sample count,
      for a larger FedAvg weight.
    * ``replay-own-update``: trains honestly once, then re-submits that same update in every later round
      without training again. A worker can replay only what it can read: other workers' updates are
      encrypted to the committee and the requester, never to workers, so the only earlier *updates* it
      holds are its own; the previous round's global model it also holds, but re-submitting that is a
      free ride on a staler model, strictly weaker than ``free-rider``.
    * ``extrapolator``: holds no data; submits ``w_g + extrapolation·(w_g − w_p)``, the step between the
      last two global models it received repeated (the global model itself in the first round).
    * ``replay-others-handles``: submits, as its own, the on-chain handles of another worker's earlier
      submission (public in the events) without being able to read them: the ciphertext and its key
      envelope are bound to that worker and round, so no validator can open them for this one.
    """

    HONEST = "honest"
    SHUFFLED_LABELS = "shuffled-labels"
    TARGETED_LABEL_FLIP = "targeted-label-flip"
    FREE_RIDER = "free-rider"
    RANDOM_WEIGHTS = "random-weights"
    SIGN_FLIP = "sign-flip"
    SCALED_UPDATE = "scaled-update"
    INFLATED_SAMPLES = "inflated-samples"
    REPLAY_OWN_UPDATE = "replay-own-update"
    REPLAY_OTHERS_HANDLES = "replay-others-handles"
    EXTRAPOLATOR = "extrapolator"


@dataclass
class Worker(Participant):
    data: Dataset
    seed: int = 0
    #: What this worker does (honest here; the attacks are subclasses in refiner.adversary).
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.HONEST
    #: A local model trained ahead (in parallel with others'), by (task, round, training settings)
    _pretrained: dict[tuple[str, int, TrainingConfig], State] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def register(self) -> TxResult:
        return self.registry.register_worker(self.account)

    def sign_up(self, task: Task) -> TxResult:
        return task.sign_up(self.account)

    def train(self, task: Task, progress: Callable[[int, int], None] | None = None) -> State:
        """Fetch and decrypt this round's global model and update it on the local data (paper 2.3.5)."""
        data = self.training_data(task)
        if data is None:
            raise ProtocolError(f"a {self.behaviour.value} worker does not train on data")
        return self.train_on(task, self.global_model(task), data, progress)

    def training_data(self, task: Task) -> Dataset | None:
        """What `train` trains the global model on this round (None: it trains nothing)."""
        return self.data

    def training_config(self, task: Task) -> TrainingConfig:
        """The task's local-training settings for this worker in the current round."""
        description = description_of(task)
        return TrainingConfig(
            epochs=description.epochs,
            batch_size=description.batch_size,
            lr=description.lr,
            mu=task.config().mu,
            seed=self.seed + task.current_round(),
        )

    def pretrained(self, task: Task, config: TrainingConfig, state: State) -> None:
        """Keep `state`, trained ahead on `training_data` with `config`, for this round's `train_on`."""
        round_ = task.current_round()
        kept = {k: v for k, v in self._pretrained.items() if k[0] != task.address or k[1] == round_}
        self._pretrained = {**kept, (task.address, round_, config): state}

    def global_model(self, task: Task) -> State:
        """This round's global model, fetched and decrypted."""
        round_ = task.current_round()
        _, spec = model_of(description_of(task), self.models)
        handles = round_inputs(task, round_)
        plaintext = retrieve(
            self.store,
            handles["modelHandle"],
            handles["modelKeysHandle"],
            Context(task.address, round_, task.requester(), "model"),
            self.account,
            max_bytes=spec.max_bytes,
        )
        return deserialize(plaintext, spec)

    def train_on(
        self,
        task: Task,
        global_state: State,
        data: Dataset,
        progress: Callable[[int, int], None] | None = None,
    ) -> State:
        """`global_state` trained on `data` with the task's local-training settings."""
        config = self.training_config(task)
        ahead = self._pretrained.pop((task.address, task.current_round(), config), None)
        if ahead is not None and data is self.training_data(task):
            return ahead
        factory = resolve_model(description_of(task).model, self.models)  # the spec was checked on receipt
        return train_local(factory, global_state, data, config, progress)

    def claimed_samples(self) -> int:
        """The sample count this worker submits: its data's size."""
        return len(self.data)

    def submit_training_results(self, task: Task, state: State) -> TxResult:
        """Share the local model with the committee and publish its handles (SubmitTrainingResults)."""
        round_ = task.current_round()
        # the committee only: a requester that could read updates before paying could take the work and
        # then sabotage the round (a validation set few validators can open, or mislabelled) to get its
        # escrow back (tests/roles/test_requester_attacks.py)
        recipients = {v: self.registry.public_key(v) for v in task.committee()}
        model_h, keys_h = share(
            self.store, serialize(state), Context(task.address, round_, self.address, "update"), recipients
        )
        return task.submit_training_results(
            self.account, bytes(model_h), bytes(keys_h), self.claimed_samples()
        )

    def claim_reward(self, task: Task, round_: int) -> int:
        """Claim what this worker has earned in the task and not been paid, with a Merkle proof of its
        leaf in `round_`'s consensus results (the leaf carries its earnings through the round, so the
        latest round pays all earlier ones too); returns wei received, 0 when nothing is due."""
        _, details = consensus_details(self.store, task, round_)
        tree = details.tree()
        try:
            result = tree.result_of(self.address)
        except KeyError:
            return 0
        last, paid = task.worker_claims(self.address)
        if round_ <= last or result.earned <= paid:
            return 0
        try:
            res = task.claim_reward(self.account, round_, result, tree.proof(self.address))
        except ContractRevert as exc:
            if exc.error in ("AlreadyClaimed", "NoReward"):
                return 0
            raise
        return int(res.event("RewardClaimed")["amount"])
