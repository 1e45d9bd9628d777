"""The four Refiner roles (paper 2.1), each method one protocol step named as in the paper."""

from refiner.roles.administrator import Administrator
from refiner.roles.participant import Participant, ProtocolError
from refiner.roles.requester import Requester
from refiner.roles.spec import TaskDescription
from refiner.roles.validator import Evaluated, Validator, ValidatorBehaviour
from refiner.roles.worker import Worker, WorkerBehaviour

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
