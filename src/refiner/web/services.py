"""What each panel does, as plain functions over a :class:`Host` (the API routes call these).

Every action names the protocol step it performs (`open_recruitment`, `sign_up`, `claim_seat`,
`submit_training_results`, `commit_manifest`, …) and checks first that the acting account may take it:
a role sees and does only what that role may. Reads come from the chain; nothing is cached that the
chain cannot rebuild, except consensus models already retrieved (with their test accuracy).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from refiner.chain import ChainError, ContractRevert, Status, Task, TxResult, public_key_bytes
from refiner.fl.evaluation import evaluate
from refiner.fl.models import State, initial_state, resolve_model
from refiner.roles.participant import ProtocolError, consensus_details, description_of
from refiner.web.host import Host, HostedAccount, Job


class Forbidden(PermissionError):
    """The account may not take this step (wrong role, not this task's requester, not a member)."""


class Conflict(RuntimeError):
    """The step is not possible now (wrong phase, already done, busy)."""


def act_as(host: Host, address: str, role: str) -> HostedAccount:
    try:
        hosted = host.hosted(address)
    except LookupError as exc:
        raise Forbidden(str(exc)) from None
    if hosted.role != role:
        raise Forbidden(f"{hosted.label} is a {hosted.role}; this step is for a {role}")
    return hosted


def task_of(host: Host, address: str) -> Task:
    if not host.registry.chain.w3.is_address(address):
        raise LookupError(f"{address!r} is not an address")
    task = Task(host.chain, host.chain.w3.to_checksum_address(address))
    if task.from_block == 0 and not host.registry.is_active_task(task.address):
        try:
            task.status()
        except Exception:
            raise LookupError(f"no Refiner task at {address}") from None
    return task


def summary(tx: TxResult | None, message: str) -> dict[str, Any]:
    if tx is None:
        return {"message": message}
    return {"message": message, "gas_used": tx.gas_used, "events": tx.names()}


def refusal(exc: BaseException) -> Conflict:
    return Conflict(str(exc))


# ---------------------------------------------------------------------------------------------- requester


def requester_of(host: Host, task: Task, account: str) -> Any:
    hosted = act_as(host, account, "requester")
    if task.requester() != hosted.address:
        raise Forbidden(f"{hosted.label} is not the requester of {task.address}")
    return host.requester[hosted.address]


def create_task(host: Host, account: str, settings: Any) -> Task:
    hosted = act_as(host, account, "requester")
    from refiner.config import TaskFile

    requester = host.requester[hosted.address]
    spec = TaskFile(task=settings)
    description = spec.description(public_key_bytes(hosted.account).hex())
    task = requester.create_task(spec.task_config(description.to_json()), description)
    if settings.budget:
        task.fund(hosted.account, settings.budget)
    return task


def open_recruitment(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account).open_recruitment(task)
    if host.demo and host.chain.kind == "embedded":
        host.chain.mine(2)  # the seed block, so validators can draw at once
    return summary(tx, "recruitment opened: workers may sign up, validators draw their seats")


def close_recruitment(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account).close_recruitment(task)
    return summary(tx, f"recruitment closed: {len(task.workers())} workers, {task.total_weight()} seats")


def latest_model(host: Host, task: Task) -> tuple[int, State]:
    round_ = task.last_consensus_round()
    if not round_:
        return 0, initial_state(resolve_model(description_of(task).model), 0)
    return round_, consensus_model(host, task, round_)[0]


def consensus_model(host: Host, task: Task, round_: int) -> tuple[State, float]:
    """The consensus model of a round (retrieved with the requester's key) and its test accuracy."""
    key = (task.address, round_)
    if key not in host.models:
        requester = host.requester.get(task.requester())
        if requester is None:
            raise ProtocolError("this server does not hold the requester's key for this task")
        state = requester.retrieve_model(task, round_)
        accuracy = evaluate(resolve_model(description_of(task).model), state, host.test).accuracy
        host.models[key] = (state, accuracy)
    return host.models[key]


def start_round(host: Host, task: Task, account: str) -> dict[str, Any]:
    requester = requester_of(host, task, account)
    round_, state = latest_model(host, task)
    tx = requester.start_round(task, state, host.validation)
    return summary(tx, f"round {task.current_round()} started from the model of round {round_}")


def stop_training(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account).stop_training(task)
    return summary(tx, "training stopped; the unspent budget can be withdrawn")


def fund(host: Host, task: Task, account: str, amount: int) -> dict[str, Any]:
    requester = requester_of(host, task, account)
    tx = task.fund(requester.account, amount)
    return summary(tx, f"budget is now {task.budget()} wei")


def withdraw(host: Host, task: Task, account: str) -> dict[str, Any]:
    requester = requester_of(host, task, account)
    tx = requester.withdraw_budget(task)
    return summary(tx, "budget withdrawn" if tx else "the budget is empty")


# ---------------------------------------------------------------------------------------------- workers


def sign_up(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "worker")
    tx = host.workers[hosted.address].sign_up(task)
    return summary(tx, f"{hosted.label} signed up")


def train(host: Host, task: Task, account: str, dataset: str) -> Job:
    """Train on the good or the bad (shuffled-label) dataset and submit (a background job)."""
    hosted = act_as(host, account, "worker")
    if task.status() is not Status.TRAINING:
        raise Conflict(f"the task is {task.status().name}, not TRAINING")
    if hosted.address not in task.workers():
        raise Forbidden(f"{hosted.label} has not signed up to this task")
    round_ = task.current_round()
    if task.submission_of(round_, hosted.address)[0]:
        raise Conflict(f"{hosted.label} already submitted in round {round_}")
    worker = host.workers[hosted.address]
    if dataset == "bad":
        worker = replace(worker, data=host.bad_data[hosted.address])

    def work(job: Job) -> dict[str, Any]:
        job.message = f"training on {len(worker.data)} images ({dataset} data)"

        def progress(done: int, total: int) -> None:
            job.progress = 0.9 * done / total

        state = worker.train(task, progress)
        job.message = "encrypting and submitting"
        tx = worker.submit_training_results(task, state)
        job.message = f"submitted round {round_}"
        return {"round": round_, "dataset": dataset, "gas_used": tx.gas_used}

    return host.start_job("train", hosted.address, task.address, work)


def claim_reward(host: Host, task: Task, account: str, round_: int) -> dict[str, Any]:
    hosted = host.hosted(account)
    if hosted.role == "worker":
        wei = host.workers[hosted.address].claim_reward(task, round_)
    elif hosted.role == "validator":
        wei = host.validators[hosted.address].claim_reward(task, round_)
    else:
        raise Forbidden("only workers and validators claim rewards")
    return {"message": f"{hosted.label} received {wei} wei for round {round_}"}


# ---------------------------------------------------------------------------------------------- validators


def claim_seat(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    if task.status() is not Status.RECRUITING:
        raise Conflict(f"seats are drawn while RECRUITING; the task is {task.status().name}")
    if task.sortition_seed() is None:
        raise Conflict("the sortition seed block has not been mined yet; try again in a moment")
    validator = host.validators[hosted.address]
    ticket = validator.sortition(task)
    if ticket.seats == 0:
        return {
            "message": f"{hosted.label} was not selected ({ticket.stake_units} of {ticket.total_units} units)"
        }
    tx = task.claim_seat(hosted.account, ticket.proof, ticket.seats)
    return summary(tx, f"{hosted.label} won {ticket.seats} seat(s)")


def evaluate_updates(host: Host, task: Task, account: str) -> Job:
    hosted = act_as(host, account, "validator")
    if task.status() is not Status.EVALUATING:
        raise Conflict(f"the task is {task.status().name}, not EVALUATING")
    if hosted.address not in task.committee():
        raise Forbidden(f"{hosted.label} is not on this task's committee")
    validator = host.validators[hosted.address]
    round_ = task.current_round()

    def work(job: Job) -> dict[str, Any]:
        job.message = "fetching and scoring every update, aggregating, leave-one-out"
        job.progress = 0.1
        work = validator.evaluate(task)
        host.work[(hosted.address, task.address, round_)] = work
        return evaluation_view(work.details)

    return host.start_job("evaluate", hosted.address, task.address, work)


def evaluation_view(details: Any) -> dict[str, Any]:
    return {
        "round": details.round,
        "accuracy": details.accuracy / 1e6,
        "loss": details.loss / 1e6,
        "workers": [
            {
                "worker": r["worker"],
                "loss": None if r["loss"] is None else r["loss"] / 1e6,
                "qualified": r["accepted"],
                "samples": r["samples"],
                "contribution": r["contribution"] / 1e6,
            }
            for r in details.results
        ],
    }


def commit(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    round_ = task.current_round()
    work = host.work.get((hosted.address, task.address, round_))
    if work is None:
        raise Conflict(f"{hosted.label} has not evaluated round {round_} yet")
    tx = host.validators[hosted.address].commit_manifest(task, work)
    return summary(tx, f"{hosted.label} committed its manifest")


def reveal(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    round_ = task.current_round()
    validator = host.validators[hosted.address]
    work = host.work.get((hosted.address, task.address, round_)) or validator.recover(task, round_)
    if work is None:
        raise Conflict(f"{hosted.label} has no commitment to reveal in round {round_}")
    tx = validator.reveal_manifest(task, work)
    return summary(tx, f"{hosted.label} revealed its manifest")


# ---------------------------------------------------------------------------------------------- anyone


def finalize(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = task.finalize_round(host.hosted(account).account)
    return summary(tx, "round settled" if "RoundFinalized" in tx.names() else "no consensus: escrow refunded")


def advance(host: Host, task: Task, account: str) -> dict[str, Any]:
    """Move a phase on after its deadline; on the demo's dev chain, first jump the clock to it."""
    hosted = host.hosted(account)
    if host.demo and task.deadline() and host.chain.now() <= task.deadline():
        host.chain.increase_time(task.deadline() - host.chain.now() + 1)
    tx = task.advance(hosted.account)
    return summary(tx, f"deadline passed: the task is now {task.status().name}")


def predict(host: Host, pixels: list[float], task_address: str | None) -> dict[str, Any]:
    """The latest consensus model of `task` (default: the newest task with one) on a drawn digit."""
    candidates = [task_of(host, task_address)] if task_address else _tasks_newest_first(host)
    for task in candidates:
        round_ = task.last_consensus_round()
        if round_:
            state, _ = consensus_model(host, task, round_)
            model = resolve_model(description_of(task).model)()
            model.load_state_dict(state)
            model.eval()
            x = torch.tensor(pixels, dtype=torch.float32).clamp(0, 1).reshape(1, 1, 28, 28)
            with torch.no_grad():
                probabilities = torch.softmax(model(x), dim=1)[0].tolist()
            best = max(range(10), key=lambda i: probabilities[i])
            return {"task": task.address, "round": round_, "prediction": best, "probabilities": probabilities}
    raise Conflict("no task has a consensus model yet: finish a round first")


def _tasks_newest_first(host: Host) -> list[Task]:
    events = host.registry.get_events("TaskRegistered")
    return [Task(host.chain, e["task"]) for e in reversed(events)]


ERRORS = (ContractRevert, ChainError, ProtocolError)
__all__ = ["ERRORS", "Conflict", "Forbidden", "consensus_details"]
