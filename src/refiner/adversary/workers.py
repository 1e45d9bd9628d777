"""Worker attacks of the adversary study (the behaviours are described on
:class:`~refiner.roles.worker.WorkerBehaviour`; the model transforms are in
:mod:`refiner.adversary.transforms`), each a subclass of the honest :class:`~refiner.roles.worker.Worker`
overriding the step it cheats in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from refiner.adversary import transforms
from refiner.adversary.transforms import AttackParameters
from refiner.chain import Task, TxResult
from refiner.fl.data import Dataset
from refiner.fl.models import State, clone_state
from refiner.fl.training import free_ride
from refiner.roles.worker import Worker, WorkerBehaviour
from refiner.wire.details import ProtocolError

Progress = Callable[[int, int], None] | None


@dataclass
class AttackingWorker(Worker):
    attack: AttackParameters = field(default_factory=AttackParameters)


class ShuffledLabels(Worker):
    """Honest code on bad data: whoever builds its dataset shuffles the labels; the class names it."""

    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.SHUFFLED_LABELS


@dataclass
class TargetedLabelFlip(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.TARGETED_LABEL_FLIP

    _flipped: Dataset | None = field(default=None, init=False, repr=False, compare=False)

    def training_data(self, task: Task) -> Dataset:
        if self._flipped is None:
            self._flipped = transforms.flip_labels(
                self.data, self.attack.flip_source, self.attack.flip_target
            )
        return self._flipped


class FreeRider(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.FREE_RIDER

    def training_data(self, task: Task) -> None:
        return None

    def train(self, task: Task, progress: Progress = None) -> State:
        return free_ride(self.global_model(task))


class RandomWeights(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.RANDOM_WEIGHTS

    def training_data(self, task: Task) -> None:
        return None

    def train(self, task: Task, progress: Progress = None) -> State:
        global_state = self.global_model(task)
        return transforms.random_weights(
            global_state, self.attack.noise_std, self.seed + task.current_round()
        )


class SignFlip(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.SIGN_FLIP

    def train(self, task: Task, progress: Progress = None) -> State:
        global_state = self.global_model(task)
        return transforms.sign_flip(global_state, self.train_on(task, global_state, self.data, progress))


class ScaledUpdate(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.SCALED_UPDATE

    def train(self, task: Task, progress: Progress = None) -> State:
        global_state = self.global_model(task)
        local = self.train_on(task, global_state, self.data, progress)
        return transforms.scale_update(global_state, local, self.attack.scale)


class InflatedSamples(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.INFLATED_SAMPLES

    def claimed_samples(self) -> int:
        return len(self.data) * self.attack.inflation


@dataclass
class ReplayOwnUpdate(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.REPLAY_OWN_UPDATE
    #: (task, round, update) of the last update it trained
    _trained: tuple[str, int, State] | None = field(default=None, init=False, repr=False, compare=False)

    def training_data(self, task: Task) -> Dataset | None:
        return None if self._replays(task) else self.data

    def _replays(self, task: Task) -> bool:
        return (
            self._trained is not None
            and self._trained[0] == task.address
            and self._trained[1] < task.current_round()
        )

    def train(self, task: Task, progress: Progress = None) -> State:
        round_ = task.current_round()
        global_state = self.global_model(task)
        if self._trained is not None and self._replays(task):
            return clone_state(self._trained[2])
        local = self.train_on(task, global_state, self.data, progress)
        self._trained = (task.address, round_, clone_state(local))
        return local


class ReplayOthersHandles(FreeRider):
    """Trains nothing (as a free rider) and submits someone else's handles instead of its own."""

    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.REPLAY_OTHERS_HANDLES

    def submit_training_results(self, task: Task, state: State) -> TxResult:
        model, keys = self._others_handles(task, task.current_round())
        return task.submit_training_results(self.account, model, keys, len(self.data))

    def _others_handles(self, task: Task, round_: int) -> tuple[bytes, bytes]:
        """The handles of another worker's most recent earlier-round submission (or, in the first round,
        of one already made in this round)."""
        for r in [*range(round_ - 1, 0, -1), round_]:
            for e in task.round_events("TrainingResultsSubmitted", r):
                if e["worker"] != self.address:
                    return bytes(e["modelHandle"]), bytes(e["keysHandle"])
        raise ProtocolError("no other worker's submission to replay yet")


@dataclass
class Extrapolator(AttackingWorker):
    behaviour: ClassVar[WorkerBehaviour] = WorkerBehaviour.EXTRAPOLATOR
    #: (task, round, global model) of the last global model it received
    _received: tuple[str, int, State] | None = field(default=None, init=False, repr=False, compare=False)

    def training_data(self, task: Task) -> None:
        return None

    def train(self, task: Task, progress: Progress = None) -> State:
        round_, global_state = task.current_round(), self.global_model(task)
        previous, self._received = self._received, (task.address, round_, clone_state(global_state))
        if previous is None or previous[0] != task.address or previous[1] != round_ - 1:
            return free_ride(global_state)
        return transforms.extrapolate(previous[2], global_state, self.attack.extrapolation)


#: The worker class of each behaviour.
WORKERS: dict[WorkerBehaviour, type[Worker]] = {
    cls.behaviour: cls
    for cls in (
        Worker,
        ShuffledLabels,
        TargetedLabelFlip,
        FreeRider,
        RandomWeights,
        SignFlip,
        ScaledUpdate,
        InflatedSamples,
        ReplayOwnUpdate,
        ReplayOthersHandles,
        Extrapolator,
    )
}


def make_worker(behaviour: WorkerBehaviour, *args: Any, **kwargs: Any) -> Worker:
    """A worker that behaves as `behaviour` (the honest :class:`Worker` for ``honest``)."""
    return WORKERS[behaviour](*args, **kwargs)


def worker_with_behaviour(worker: Worker, behaviour: WorkerBehaviour) -> Worker:
    """The same participant (account, data, seed, settings) behaving as `behaviour`."""
    target = WORKERS[behaviour]
    names = {f.name for f in fields(target) if f.init}
    return target(**{f.name: getattr(worker, f.name) for f in fields(worker) if f.init and f.name in names})
