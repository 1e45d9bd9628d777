"""The four Refiner roles (paper 2.1), each method one protocol step named as in the paper."""

from refiner.roles.administrator import Administrator
from refiner.roles.participant import Participant
from refiner.roles.requester import Requester
from refiner.roles.validator import Evaluated, Validator, ValidatorBehaviour
from refiner.roles.worker import Worker, WorkerBehaviour
from refiner.wire.details import ProtocolError
from refiner.wire.spec import TaskDescription

__all__ = [
    "Administrator",
    "Evaluated",
    "Participant",
    "ProtocolError",
    "Requester",
    "TaskDescription",
    "Validator",
    "ValidatorBehaviour",
    "Worker",
    "WorkerBehaviour",
]
