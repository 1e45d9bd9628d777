"""What the panels show, read from the chain (and the stored consensus manifests).

Events come from the host's index of the chain's logs (`Host.events_of`: the embedded chain reads every
receipt in range for each log query, so one query per event name made a task's page take seconds);
what a settled round cannot change any more (its consensus details, the gas of a mined transaction) is
remembered by the host too.
"""

from __future__ import annotations

from typing import Any

from eth_typing import HexStr

from refiner.chain import Event, Manifest, Task
from refiner.chain.types import NO_EPSILON, PHASE_EVENT, ROUND_EVENTS
from refiner.fl.round_evaluation import epsilon_ppm
from refiner.reasons import result_reason
from refiner.storage import StorageError
from refiner.units import from_fixed
from refiner.web.host import Host
from refiner.wire.details import ProtocolError
from refiner.wire.reads import consensus_details, description_of
from refiner.wire.spec import DescriptionError


def task_summary(task: Task) -> dict[str, Any]:
    cfg = task.config()
    return {
        "address": task.address,
        "requester": task.requester(),
        "status": task.status().name,
        "round": task.current_round(),
        "max_rounds": cfg.max_rounds,
        "workers": len(task.workers()),
        "max_workers": cfg.max_workers,
        "seats": task.total_weight(),
        "committee_size": cfg.committee_size,
        "budget_wei": str(task.budget()),
    }


def task_detail(host: Host, task: Task) -> dict[str, Any]:
    cfg = task.config()
    owed, budget, held = task.owed(), task.budget(), task.deposits_held()
    label = {a: h.label for a, h in host.accounts.items()}
    events = host.events_of(task)
    members = task.workers()
    return {
        **task_summary(task),
        "deadline": task.deadline(),
        "now": host.chain.now(),
        "escrow_wei": str(owed - budget - held),
        "deposits_held_wei": str(held),
        "owed_wei": str(owed),
        "balance_wei": str(task.balance()),
        # the initial model's test accuracy (round 0 of the learning curve), scored when round 1 started
        "initial_test_accuracy": (host.models.get((task.address, 0)) or (None, None))[1],
        "config": {
            "worker_reward_wei": str(cfg.worker_reward),
            "validator_reward_wei": str(cfg.validator_reward),
            "sign_up_deposit_wei": str(cfg.sign_up_deposit),
            "target_accuracy": cfg.target_accuracy,
            "epsilon": None if cfg.epsilon >= NO_EPSILON else cfg.epsilon,  # None: no absolute bound
            "contribution": _contribution(task),
            "aggregation": cfg.aggregation.name,
            "mu": cfg.mu,
            "durations": dict(
                zip(
                    ("recruitment", "training", "evaluation", "reveal", "idle", "claim"),
                    cfg.durations.as_tuple(),
                    strict=True,
                )
            ),
        },
        "members": members,
        "committee": [
            {"address": v, "label": label.get(v, v[:10]), "weight": w} for v, w in task.committee().items()
        ],
        "rounds": [round_view(host, task, r, events, members) for r in range(1, task.current_round() + 1)],
    }


def _contribution(task: Task) -> str | None:
    """The measure the task's validators use (None if its description is not a Refiner one)."""
    try:
        return description_of(task).contribution
    except DescriptionError:
        return None


def round_view(
    host: Host, task: Task, round_: int, events: list[Event] | None = None, members: list[str] | None = None
) -> dict[str, Any]:
    """A round's progress and outcome; `events` (the task's, in chain order) and `members` (its workers)
    are read here unless the caller already has them."""
    if events is None:
        events = host.events_of(task)
    mine = [e for e in events if e.args.get("round") == round_]
    info = task.round_info(round_)
    consensus = info.consensus_key != bytes(32)
    view: dict[str, Any] = {
        "round": round_,
        "submissions": info.submissions,
        "commits": info.commits,
        "reveals": info.reveals,
        "finalized": info.finalized,
        "consensus": consensus if info.finalized or consensus else None,
        "validation_accuracy": from_fixed(info.accuracy) if info.finalized and consensus else None,
        "test_accuracy": None,
        "accepted": [],
        "rejected": [],
        "contributions": {},
        "reasons": {},
        "worker_payouts_wei": {},
        "validator_payouts_wei": {},
        "agreeing": [],
        "disagreeing": [],
        "gas_used": _gas(host, mine),
    }
    revealed = {
        e["validator"]: Manifest.from_tuple(e["manifest"]) for e in mine if e.name == "ManifestRevealed"
    }
    if consensus:
        view["agreeing"] = [v for v, m in revealed.items() if m.vote_key() == info.consensus_key]
        view["disagreeing"] = [v for v, m in revealed.items() if m.vote_key() != info.consensus_key]
    if info.finalized and consensus:
        key = (task.address, round_)
        try:
            if key not in host.details:  # settled: its consensus details cannot change any more
                host.details[key] = consensus_details(host.store, task, round_)[1]
            for r in host.details[key].results:
                view["accepted" if r["accepted"] else "rejected"].append(r["worker"])
                view["contributions"][r["worker"]] = r["contribution"]
                view["reasons"][r["worker"]] = result_reason(r, epsilon_ppm(task.config().epsilon))
        except (ProtocolError, StorageError):
            pass
        scored = host.models.get(key)  # scored when the round was settled, never while rendering
        view["test_accuracy"] = scored[1] if scored else None
    workers = set(task.workers() if members is None else members)
    for e in mine:
        if e.name == "RewardClaimed":
            side = "worker_payouts_wei" if e["account"] in workers else "validator_payouts_wei"
            view[side][e["account"]] = str(int(view[side].get(e["account"], 0)) + int(e["amount"]))
    return view


#: A round's transactions: those that emitted one of its events or changed its phase.
_GAS_EVENTS = (*ROUND_EVENTS, PHASE_EVENT)


def _gas(host: Host, events: list[Event]) -> int:
    """Gas of every transaction that emitted one of the round's events (phase changes included)."""
    total = 0
    for h in {e.tx_hash for e in events if e.name in _GAS_EVENTS and e.tx_hash}:
        if h not in host.gas:  # a mined transaction's gas does not change
            host.gas[h] = int(host.chain.w3.eth.get_transaction_receipt(HexStr(h))["gasUsed"])
        total += host.gas[h]
    return total


def account_detail(host: Host, address: str) -> dict[str, Any]:
    hosted = host.hosted(address)
    me = hosted.address
    tasks, rewards = [], []
    for registered in host.registered_tasks():
        task = host.known_task(registered)
        events = host.events_of(task)
        joined = (
            (e.name == "WorkerSignedUp" and e["worker"] == me)
            or (e.name == "CommitteeMemberAdded" and e["validator"] == me)
            for e in events
        )
        if task.requester() == me or any(joined):
            tasks.append(task.address)
        rewards += [
            {"task": task.address, "round": int(e["round"]), "amount_wei": str(e["amount"])}
            for e in events
            if e.name == "RewardClaimed" and e["account"] == me
        ]
    return {
        "address": hosted.address,
        "label": hosted.label,
        "role": hosted.role,
        "balance_wei": str(host.chain.w3.eth.get_balance(hosted.account.address)),
        "rewards": rewards,
        "tasks": tasks,
    }
