"""Adversaries: each attack a small subclass of an honest role (honest code stays in refiner.roles)."""

from refiner.adversary.validators import COLLUSION_CONTRIBUTION, VALIDATORS, make_validator, with_behaviour
from refiner.adversary.workers import WORKERS, make_worker, worker_with_behaviour

__all__ = [
    "COLLUSION_CONTRIBUTION",
    "VALIDATORS",
    "WORKERS",
    "make_validator",
    "make_worker",
    "with_behaviour",
    "worker_with_behaviour",
]
