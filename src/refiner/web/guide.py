"""What the page lets an account do now and what the demo's next step is, asked of `refiner.protocol`.

Each of the page's actions is allowed or refused with the protocol's reason (`why_not`), so a button is
disabled with a sentence instead of failing when clicked; `next_step` names who acts next and how, in
the protocol's order (workers, then validators, then the requester, whose closing of recruitment waits
until nobody else has anything to do).
"""

from __future__ import annotations

from typing import Any

from refiner.chain import Status, Task
from refiner.protocol import (
    Due,
    Role,
    Step,
    advance_is_due,
    chain_now,
    due,
    has_deadline,
    waiting_for,
    why_not,
)
from refiner.web.host import Host, HostedAccount
from refiner.web.schemas import NextOut

#: The page's actions per role: the protocol step each one takes (evaluating comes before committing).
ACTIONS: dict[str, dict[str, Step]] = {
    "requester": {
        "open_recruitment": Step.OPEN_RECRUITMENT,
        "close_recruitment": Step.CLOSE_RECRUITMENT,
        "start_round": Step.START_ROUND,
        "stop_training": Step.STOP_TRAINING,
        "finalize_round": Step.FINALIZE_ROUND,
        "advance": Step.ADVANCE,
    },
    "worker": {
        "sign_up": Step.SIGN_UP,
        "submit_training_results": Step.SUBMIT_TRAINING_RESULTS,
        "finalize_round": Step.FINALIZE_ROUND,
        "advance": Step.ADVANCE,
    },
    "validator": {
        "claim_seat": Step.CLAIM_SEAT,
        "evaluate": Step.COMMIT_MANIFEST,
        "commit_manifest": Step.COMMIT_MANIFEST,
        "reveal_manifest": Step.REVEAL_MANIFEST,
        "finalize_round": Step.FINALIZE_ROUND,
        "advance": Step.ADVANCE,
    },
}

#: Whose steps the next-step hint looks at first.
ORDER = ("worker", "validator", "requester")


def actions(host: Host, task: Task, hosted: HostedAccount) -> dict[str, str | None]:
    """Each of the page's actions for `hosted`: None when it may take it now, else why not."""
    role = Role(hosted.role)
    refused: dict[str, str | None] = {}
    for action, step in ACTIONS[hosted.role].items():
        if step is Step.ADVANCE and host.demo and has_deadline(task, task.status()):
            refused[action] = None  # the demo's clock jumps to the deadline first
            continue
        reason = why_not(task, hosted.address, role, step)
        refused[action] = None if reason is None else reason.reason
    if hosted.role == "validator":
        if refused["claim_seat"] is None and (hosted.address, task.address) in host.not_selected:
            refused["claim_seat"] = "the sortition did not select it for this task"
        if refused["commit_manifest"] is None and not _evaluated(host, task, hosted):
            refused["commit_manifest"] = "it has not evaluated this round's updates yet: evaluate first"
    return refused


def claims(host: Host, task: Task, hosted: HostedAccount) -> dict[int, str | None]:
    """Each settled round's claim for `hosted`: None when there is something to claim, else why not."""
    if hosted.role == "requester":
        return {}
    role = Role(hosted.role)
    out: dict[int, str | None] = {}
    for round_ in range(1, task.current_round() + 1):
        reason = why_not(task, hosted.address, role, Step.CLAIM_REWARD, round_=round_)
        if reason is None and hosted.role == "worker" and not _paid(host, task, round_, hosted.address):
            out[round_] = "its update was rejected or did not improve the model: it earns nothing"
        else:
            out[round_] = None if reason is None else reason.reason
    return out


def next_step(host: Host, task: Task, current: str) -> NextOut | None:
    """Who acts next and how (None: nobody has anything left to do on this task)."""
    hosted = sorted(host.accounts.values(), key=lambda h: ORDER.index(h.role))
    candidates: list[tuple[HostedAccount, Due]] = []
    for who in hosted:
        steps = due(task, who.address, Role(who.role))
        owed = claims(host, task, who) if any(s.step is Step.CLAIM_REWARD for s in steps) else {}
        for step in steps:
            if step.step is Step.ADVANCE or (step.step is Step.FINALIZE_ROUND and who.role != "requester"):
                continue
            if step.step is Step.CLAIM_SEAT and (who.address, task.address) in host.not_selected:
                continue
            if step.step is Step.CLAIM_REWARD and owed.get(step.round, "") is not None:
                continue  # nothing to claim (an unpaid worker's round)
            candidates.append((who, step))
    chosen = next((c for c in candidates if not c[1].optional), None)
    chosen = chosen or next((c for c in candidates if c[1].step is Step.CLOSE_RECRUITMENT), None)
    if chosen is None:
        status = task.status()
        # in the demo nobody else is left to act before the deadline; on a participant's own server
        # others may still act, so only a passed deadline is its to move on
        movable = advance_is_due(task, status, chain_now(task)) if not host.demo else True
        if movable and has_deadline(task, status) and status is not Status.PENDING:
            me = host.accounts[current]
            verb = f"advance past the {status.name} deadline"
            if host.demo:
                verb += " (nobody has anything left to do before it)"
            text = _text(current, me, verb)
            return NextOut(
                account=me.address,
                label=me.label,
                step=Step.ADVANCE.value,
                round=task.current_round(),
                text=text,
                action="advance",
                accounts=[],
            )
        return None
    who, step = chosen
    action = _action(host, task, who, step)
    same = [w.address for w, s in candidates if s == step and _action(host, task, w, s) == action]
    if step.step is Step.SIGN_UP:  # as many as the task has room for
        same = same[: max(1, task.config().max_workers - len(task.workers()))]
    text = _text(current, who, _verb(host, task, who, step))
    return NextOut(
        account=who.address,
        label=who.label,
        step=step.step.value,
        round=step.round,
        text=text,
        action=action,
        accounts=same,
    )


def view(host: Host, task: Task, account: str) -> dict[str, Any]:
    """The page's guide for `account` on `task`."""
    hosted = host.accounts[account]
    hint = next_step(host, task, account)
    return {
        "account": hosted.address,
        "actions": actions(host, task, hosted),
        "claims": {str(r): reason for r, reason in claims(host, task, hosted).items()},
        "next": None if hint is None else hint.model_dump(),
        "waiting": waiting_for(task) if hint is None else None,
    }


def _evaluated(host: Host, task: Task, who: HostedAccount) -> bool:
    """Whether `who` has evaluated the current round here (its work waits to be committed)."""
    return (who.address, task.address, task.current_round()) in host.work


def _paid(host: Host, task: Task, round_: int, worker: str) -> bool:
    details = host.details.get((task.address, round_))
    if details is None:
        return True  # not read yet: the claim will tell
    return any(
        r["worker"] == worker and r["accepted"] and int(r["contribution"]) > 0 for r in details.results
    )


def _action(host: Host, task: Task, who: HostedAccount, step: Due) -> str:
    if step.step is Step.COMMIT_MANIFEST:
        return "commit-manifest" if _evaluated(host, task, who) else "evaluate"
    if step.step is Step.SUBMIT_TRAINING_RESULTS:
        return "train"
    return step.step.value.replace("_", "-")


def _verb(host: Host, task: Task, who: HostedAccount, step: Due) -> str:
    if step.step is Step.COMMIT_MANIFEST:
        return "commit its manifest" if _evaluated(host, task, who) else "evaluate the updates, then commit"
    return {
        Step.OPEN_RECRUITMENT: "open recruitment",
        Step.SIGN_UP: "sign up",
        Step.FIX_SEED: "fix the sortition seed",
        Step.CLAIM_SEAT: "claim a committee seat",
        Step.CLOSE_RECRUITMENT: "close recruitment",
        Step.START_ROUND: f"start round {step.round + 1}",
        Step.STOP_TRAINING: "stop training",
        Step.SUBMIT_TRAINING_RESULTS: "train and submit",
        Step.REVEAL_MANIFEST: "reveal its manifest",
        Step.FINALIZE_ROUND: f"finalize round {step.round}",
        Step.CLAIM_REWARD: f"claim the reward of round {step.round}",
    }[step.step]


def _text(current: str, who: HostedAccount, verb: str) -> str:
    if who.address == current:
        return f"next: {verb}"
    return f"next: switch to {who.label} and {verb}"
