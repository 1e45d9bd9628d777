"""The operator's terms: which tasks a worker or validator agent joins.

Anybody can post a task, so before an agent joins one it reads the description (type- and range-checked,
`refiner.wire.spec`), resolves the model by name among the built-in ones and the operator's own, and
compares the task's reward, phase durations, epochs and (validators) the worst-case time its stake stays
locked with the operator's limits. A task outside them is skipped with one log line; the others are
served as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from refiner.chain import Durations, TaskConfig
from refiner.fl.models import ModelFn, resolve_model
from refiner.wire.spec import DescriptionError, TaskDescription

DAY = 86400
PHASES = tuple(f.name for f in fields(Durations))


@dataclass(frozen=True)
class Terms:
    """Limits a task must meet for the agent to join it (a task already joined is served regardless)."""

    #: The least per-round reward of the agent's role (the task's worker_reward or validator_reward), wei.
    min_reward: int = 0
    #: The longest each named phase may last, seconds (phases of `Durations`; missing: no limit).
    max_durations: Mapping[str, int] = field(default_factory=dict)
    #: The most local epochs per round the description may ask for (None: the description's own bound).
    max_epochs: int | None = None
    #: Validators: the longest their stake may stay locked on the task's committee, seconds.
    max_lock: int = 30 * DAY

    def __post_init__(self) -> None:
        unknown = sorted(set(self.max_durations) - set(PHASES))
        if unknown:
            raise ValueError(f"unknown phase(s) {unknown} in max durations: use {list(PHASES)}")


def worst_case_lock(config: TaskConfig, seat_lock: int | None = None) -> int:
    """Seconds a seated validator's stake can stay locked: recruitment, then every round's training,
    evaluation and reveal, with the longest wait (idle) before each round starts; at most the registry's
    `seat_lock` (`maxSeatLock`), after which the contract lets the validator unbond anyway."""
    d = config.durations
    lifetime = d.recruitment + config.max_rounds * (d.idle + d.training + d.evaluation + d.reveal)
    return lifetime if seat_lock is None else min(lifetime, seat_lock)


def refusal(
    config: TaskConfig,
    terms: Terms,
    models: Mapping[str, ModelFn],
    *,
    validator: bool,
    joined: bool,
    seat_lock: int | None = None,
) -> str | None:
    """Why the agent does not serve a task (None: it does). The description and the model are checked
    for a task already joined too (nothing can be done on it without them); the terms are not."""
    try:
        description = TaskDescription.from_json(config.description)
        resolve_model(description.model, models)
    except (DescriptionError, ValueError) as exc:
        return str(exc).splitlines()[0][:300]
    if joined:
        return None
    reward = config.validator_reward if validator else config.worker_reward
    if validator and reward == 0:
        return "it pays validators nothing"
    if reward < terms.min_reward:
        return f"its reward of {reward} wei per round is under the minimum of {terms.min_reward} wei"
    for phase, limit in sorted(terms.max_durations.items()):
        seconds = getattr(config.durations, phase)
        if seconds > limit:
            return f"its {phase} phase lasts {seconds} s, more than the maximum of {limit} s"
    if terms.max_epochs is not None and description.epochs > terms.max_epochs:
        return (
            f"it asks for {description.epochs} epochs per round, more than the maximum of {terms.max_epochs}"
        )
    lock = worst_case_lock(config, seat_lock)
    if validator and lock > terms.max_lock:
        return f"it can lock the stake for {lock} s, more than the maximum of {terms.max_lock} s"
    return None
