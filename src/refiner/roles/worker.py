"""The worker (paper 2.1, 2.3.5): trains the global model on its private data and is paid by contribution.

Besides the honest worker, the behaviours of the adversary study: bad data (shuffled labels, a targeted
label flip), poisoned updates (random weights, sign flip, scaled update), and cheating on effort or size
(free rider, inflated sample count, replays). The transforms live in :mod:`refiner.roles.attacks`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from refiner.chain import ContractRevert, Task, TxResult
from refiner.fl.data import Dataset
from refiner.fl.models import State, clone_state, deserialize, serialize
from refiner.fl.training import TrainingConfig, free_ride, train_local
from refiner.roles import attacks
from refiner.roles.attacks import AttackParameters
from refiner.roles.participant import (
    Participant,
    ProtocolError,
    consensus_details,
    description_of,
    model_of,
    round_inputs,
)
from refiner.sharing import Context, retrieve, share


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
    behaviour: WorkerBehaviour = WorkerBehaviour.HONEST
    seed: int = 0
    attack: AttackParameters = field(default_factory=AttackParameters)
    #: replay-own-update: (task, round, update) of the last update it trained
    _trained: tuple[str, int, State] | None = field(default=None, init=False, repr=False, compare=False)
    #: extrapolator: (task, round, global model) of the last global model it received
    _received: tuple[str, int, State] | None = field(default=None, init=False, repr=False, compare=False)

    def register(self) -> TxResult:
        return self.registry.register_worker(self.account)

    def sign_up(self, task: Task) -> TxResult:
        return task.sign_up(self.account)

    def train(self, task: Task, progress: Callable[[int, int], None] | None = None) -> State:
        """Fetch and decrypt this round's global model and update it on the local data (paper 2.3.5)."""
        round_ = task.current_round()
        description = description_of(task)
        factory, spec = model_of(description, self.models)
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
        b = self.behaviour
        if b in (WorkerBehaviour.FREE_RIDER, WorkerBehaviour.REPLAY_OTHERS_HANDLES):
            return free_ride(global_state)  # the latter submits someone else's handles, not this
        if b is WorkerBehaviour.EXTRAPOLATOR:
            return self._extrapolated(task.address, round_, global_state)
        if b is WorkerBehaviour.RANDOM_WEIGHTS:
            return attacks.random_weights(global_state, self.attack.noise_std, self.seed + round_)
        if b is WorkerBehaviour.REPLAY_OWN_UPDATE and self._trained is not None:
            trained_task, trained_round, update = self._trained
            if trained_task == task.address and trained_round < round_:
                return clone_state(update)
        data = self.data
        if b is WorkerBehaviour.TARGETED_LABEL_FLIP:
            data = attacks.flip_labels(data, self.attack.flip_source, self.attack.flip_target)
        config = TrainingConfig(
            epochs=description.epochs,
            batch_size=description.batch_size,
            lr=description.lr,
            mu=task.config().mu,
            seed=self.seed + round_,
        )
        local = train_local(factory, global_state, data, config, progress)
        if b is WorkerBehaviour.SIGN_FLIP:
            return attacks.sign_flip(global_state, local)
        if b is WorkerBehaviour.SCALED_UPDATE:
            return attacks.scale_update(global_state, local, self.attack.scale)
        if b is WorkerBehaviour.REPLAY_OWN_UPDATE:
            self._trained = (task.address, round_, clone_state(local))
        return local

    def _extrapolated(self, task: str, round_: int, global_state: State) -> State:
        previous, self._received = self._received, (task, round_, clone_state(global_state))
        if previous is None or previous[0] != task or previous[1] != round_ - 1:
            return free_ride(global_state)
        return attacks.extrapolate(previous[2], global_state, self.attack.extrapolation)

    def submit_training_results(self, task: Task, state: State) -> TxResult:
        """Share the local model with the committee and publish its handles (SubmitTrainingResults)."""
        round_ = task.current_round()
        if self.behaviour is WorkerBehaviour.REPLAY_OTHERS_HANDLES:
            model, keys = self._others_handles(task, round_)
            return task.submit_training_results(self.account, model, keys, len(self.data))
        # the committee only: a requester that could read updates before paying could take the work and
        # then sabotage the round (a validation set few validators can open, or mislabelled) to get its
        # escrow back (tests/roles/test_requester_attacks.py)
        recipients = {v: self.registry.public_key(v) for v in task.committee()}
        model_h, keys_h = share(
            self.store, serialize(state), Context(task.address, round_, self.address, "update"), recipients
        )
        samples = len(self.data)
        if self.behaviour is WorkerBehaviour.INFLATED_SAMPLES:
            samples *= self.attack.inflation
        return task.submit_training_results(self.account, bytes(model_h), bytes(keys_h), samples)

    def _others_handles(self, task: Task, round_: int) -> tuple[bytes, bytes]:
        """The handles of another worker's most recent earlier-round submission (or, in the first round,
        of one already made in this round)."""
        for r in [*range(round_ - 1, 0, -1), round_]:
            for e in task.round_events("TrainingResultsSubmitted", r):
                if e["worker"] != self.address:
                    return bytes(e["modelHandle"]), bytes(e["keysHandle"])
        raise ProtocolError("no other worker's submission to replay yet")

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
