"""What the panels show, read from the chain (and the stored consensus manifests)."""

from __future__ import annotations

import contextlib
from typing import Any

from eth_typing import HexStr

from refiner.chain import Task
from refiner.roles.participant import ProtocolError, consensus_details
from refiner.storage import StorageError
from refiner.web.host import Host
from refiner.web.services import consensus_model


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
    owed, budget = task.owed(), task.budget()
    label = {a: h.label for a, h in host.accounts.items()}
    return {
        **task_summary(task),
        "deadline": task.deadline(),
        "now": host.chain.now(),
        "escrow_wei": str(owed - budget),
        "owed_wei": str(owed),
        "balance_wei": str(task.balance()),
        "config": {
            "worker_reward_wei": str(cfg.worker_reward),
            "validator_reward_wei": str(cfg.validator_reward),
            "target_accuracy": cfg.target_accuracy,
            "epsilon": cfg.epsilon,
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
        "members": task.workers(),
        "committee": [
            {"address": v, "label": label.get(v, v[:10]), "weight": w} for v, w in task.committee().items()
        ],
        "rounds": [round_view(host, task, r) for r in range(1, task.current_round() + 1)],
    }


def round_view(host: Host, task: Task, round_: int) -> dict[str, Any]:
    info = task.round_info(round_)
    consensus = info.consensus_key != bytes(32)
    view: dict[str, Any] = {
        "round": round_,
        "submissions": info.submissions,
        "commits": info.commits,
        "reveals": info.reveals,
        "finalized": info.finalized,
        "consensus": consensus if info.finalized or consensus else None,
        "validation_accuracy": info.accuracy / 1e6 if info.finalized and consensus else None,
        "test_accuracy": None,
        "accepted": [],
        "rejected": [],
        "contributions": {},
        "worker_payouts_wei": {},
        "validator_payouts_wei": {},
        "agreeing": [],
        "disagreeing": [],
        "gas_used": _gas(host, task, round_),
    }
    revealed = task.revealed_manifests(round_)
    if consensus:
        view["agreeing"] = [v for v, m in revealed.items() if m.vote_key() == info.consensus_key]
        view["disagreeing"] = [v for v, m in revealed.items() if m.vote_key() != info.consensus_key]
    if info.finalized and consensus:
        try:
            _, details = consensus_details(host.requester_role(task), task, round_)
            for r in details.results:
                view["accepted" if r["accepted"] else "rejected"].append(r["worker"])
                view["contributions"][r["worker"]] = r["contribution"]
        except (ProtocolError, StorageError):
            pass
        with contextlib.suppress(ProtocolError, StorageError):
            view["test_accuracy"] = consensus_model(host, task, round_)[1]
    workers = set(task.workers())
    for e in task.round_events("RewardClaimed", round_):
        side = "worker_payouts_wei" if e["account"] in workers else "validator_payouts_wei"
        view[side][e["account"]] = str(int(view[side].get(e["account"], 0)) + int(e["amount"]))
    return view


ROUND_EVENTS = (
    "RoundStarted",
    "TrainingResultsSubmitted",
    "ManifestCommitted",
    "ManifestRevealed",
    "RoundFinalized",
    "NoConsensus",
    "RewardClaimed",
)


def _gas(host: Host, task: Task, round_: int) -> int:
    """Gas of every transaction that emitted one of the round's events (phase changes included)."""
    hashes = {e.tx_hash for name in ROUND_EVENTS for e in task.round_events(name, round_)}
    start = task.round_start_block(round_)
    hashes |= {e.tx_hash for e in task.get_events("StatusChanged", from_block=start) if e["round"] == round_}
    receipts = [host.chain.w3.eth.get_transaction_receipt(HexStr(h)) for h in hashes if h]
    return sum(int(r["gasUsed"]) for r in receipts)


def account_detail(host: Host, address: str) -> dict[str, Any]:
    hosted = host.hosted(address)
    rewards = []
    tasks = []
    for e in host.registry.get_events("TaskRegistered"):
        task = Task(host.chain, e["task"])
        mine = (
            task.requester() == hosted.address
            or hosted.address in task.workers()
            or hosted.address in task.committee()
        )
        if not mine:
            continue
        tasks.append(task.address)
        for r in task.get_events("RewardClaimed", account=hosted.address):
            rewards.append({"task": task.address, "round": int(r["round"]), "amount_wei": str(r["amount"])})
    return {
        "address": hosted.address,
        "label": hosted.label,
        "role": hosted.role,
        "balance_wei": str(host.chain.w3.eth.get_balance(hosted.account.address)),
        "rewards": rewards,
        "tasks": tasks,
    }
