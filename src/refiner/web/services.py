"""What each panel does, as plain functions over a :class:`Host` (the API routes call these).

Every action names the protocol step it performs (`open_recruitment`, `sign_up`, `claim_seat`,
`submit_training_results`, `commit_manifest`, …) and checks first that the acting account may take it:
a role sees and does only what that role may. Reads come from the chain; nothing is cached that the
chain cannot rebuild, except consensus models already retrieved (with their test accuracy).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from typing import Any

from eth_utils import to_checksum_address

from refiner.chain import ChainError, ContractRevert, Status, Task, TxResult, public_key_bytes
from refiner.chain.connection import EMBEDDED_GAS_LIMIT
from refiner.fl.evaluation import evaluate
from refiner.fl.inference import classify_digit
from refiner.fl.models import State, initial_state, resolve_model
from refiner.protocol import has_deadline
from refiner.roles.participant import ProtocolError, consensus_details, description_of
from refiner.storage import StorageError
from refiner.units import ether, from_fixed
from refiner.web.host import Conflict, Forbidden, Host, HostedAccount, Invalid, Job, NotFound


def act_as(host: Host, address: str, role: str) -> HostedAccount:
    hosted = acting(host, address)
    if hosted.role != role:
        raise Forbidden(f"{hosted.label} is a {hosted.role}; this step is for a {role}")
    return hosted


def acting(host: Host, address: str) -> HostedAccount:
    """The hosted account that takes a step; one whose key this server does not hold is refused (403)."""
    try:
        return host.hosted(address)
    except NotFound as exc:
        raise Forbidden(f"{exc}: it cannot act here") from None


def short(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, cut to `limit` characters (inputs can be long)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def task_of(host: Host, address: str) -> Task:
    """The task at `address` (any letter case, as accounts are); 422 if it is no address, 404 if no task
    is there."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise Invalid(f"{short(address)} is not a task address: write 0x and 40 hex digits")
    checksummed = to_checksum_address(address)
    task = host.known_task(checksummed)
    if task.from_block == 0 and not host.registry.is_active_task(task.address):
        try:
            task.status()
        except Exception:
            raise NotFound(f"there is no Refiner task at {checksummed}") from None
    return task


def ensure_funds(host: Host, hosted: HostedAccount, value: int, what: str) -> None:
    """Refuse (409) a payment the account cannot make with enough left for the transaction's gas."""
    balance = host.chain.w3.eth.get_balance(hosted.account.address)
    gas = EMBEDDED_GAS_LIMIT * host.chain.w3.eth.gas_price
    if value + gas > balance:
        raise Conflict(
            f"{hosted.label} holds {ether(balance)}, not enough to pay {ether(value)} for {what} plus gas"
        )


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
        raise Forbidden(f"{hosted.label} is not the requester of task {task.address}")
    return host.requester[hosted.address]


def create_task(host: Host, account: str, settings: Any) -> Task:
    hosted = act_as(host, account, "requester")
    from refiner.config import TaskFile

    requester = host.requester[hosted.address]
    spec = TaskFile(task=settings)
    description = spec.description(public_key_bytes(hosted.account).hex())
    # check what the deployment cannot check before anything is deployed: the budget must be payable
    ensure_funds(host, hosted, settings.budget, "the budget")
    try:
        task = requester.create_task(spec.task_config(description.to_json()), description)
    except ContractRevert as exc:
        if exc.error == "InvalidConfig":
            raise Invalid(f"the task contract refuses these settings: {exc.args_by_name['reason']}") from None
        raise
    if settings.budget:
        task.fund(hosted.account, settings.budget)
    return task


def open_recruitment(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account).open_recruitment(task)
    if host.demo and host.chain.manual_clock:
        # past the seed block (the next epoch's first), so validators can draw at once
        host.chain.mine(max(1, task.seed_block() + 1 - host.chain.w3.eth.block_number))
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
    status = task.status()
    if status is not Status.PENDING or not task.recruitment_closed():
        when = "after recruitment closed" if status is Status.PENDING else f"while PENDING, not {status.name}"
        raise Conflict(f"a round can start only {when}")
    cfg = task.config()
    shortfall = max(0, cfg.worker_reward + cfg.validator_reward - task.budget())
    ensure_funds(host, host.accounts[requester.address], shortfall, "the round's rewards")
    round_, state = latest_model(host, task)
    tx = requester.start_round(task, state, host.validation)
    return summary(tx, f"round {task.current_round()} started from the model of round {round_}")


def stop_training(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account).stop_training(task)
    return summary(tx, "training stopped; the unspent budget can be withdrawn")


def fund(host: Host, task: Task, account: str, amount: int) -> dict[str, Any]:
    requester = requester_of(host, task, account)
    ensure_funds(host, host.accounts[requester.address], amount, "the budget")
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
    if hosted.address not in task.workers():
        raise Forbidden(f"{hosted.label} has not signed up to this task")
    if task.status() is not Status.TRAINING:
        raise Conflict(f"the task is {task.status().name}, not TRAINING")
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
    hosted = acting(host, account)
    if hosted.role == "requester":
        raise Forbidden("only workers and validators claim rewards; the requester withdraws its budget")
    current = task.current_round()
    if round_ > current:
        raise NotFound(f"the task has no round {round_} yet (it is in round {current})")
    info = task.round_info(round_)
    if not info.finalized:
        raise Conflict(f"round {round_} is not settled yet: finalize it first")
    if not info.consensus:
        raise Conflict(f"round {round_} ended without consensus, so nobody is paid for it")
    claims = (e for e in host.events_of(task) if e.name == "RewardClaimed" and e["round"] == round_)
    if any(e["account"] == hosted.address for e in claims):
        raise Conflict(f"{hosted.label} already claimed its reward for round {round_}")
    if hosted.role == "worker":
        if task.submission_of(round_, hosted.address)[0] == 0:
            raise Forbidden(f"{hosted.label} submitted no update in round {round_}")
        wei = host.workers[hosted.address].claim_reward(task, round_)
        unpaid = "its update was rejected or did not improve the model"
    else:
        if hosted.address not in task.committee():
            raise Forbidden(f"{hosted.label} is not on this task's committee")
        wei = host.validators[hosted.address].claim_reward(task, round_)
        unpaid = "it did not reveal the consensus manifest"
    if not wei:
        return {"message": f"{hosted.label} earns nothing for round {round_}: {unpaid}"}
    return {"message": f"{hosted.label} received {wei} wei for round {round_}"}


# ---------------------------------------------------------------------------------------------- validators


def claim_seat(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    if task.status() is not Status.RECRUITING:
        raise Conflict(f"seats are drawn while RECRUITING; the task is {task.status().name}")
    seats = task.committee().get(hosted.address)
    if seats:
        raise Conflict(f"{hosted.label} already holds {seats} seat(s) on this task's committee")
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
    hosted = committee_member(host, task, account)
    if task.status() is not Status.EVALUATING:
        raise Conflict(f"the task is {task.status().name}, not EVALUATING")
    validator = host.validators[hosted.address]
    round_ = task.current_round()
    if task.ballot_of(round_, hosted.address) != bytes(32):
        # a second evaluation would share a new aggregate: the committed manifest could not be revealed
        raise Conflict(f"{hosted.label} already committed its manifest for round {round_}")

    def work(job: Job) -> dict[str, Any]:
        job.message = "fetching and scoring every update, aggregating, measuring contributions"
        job.progress = 0.1
        work = validator.evaluate(task)
        host.work[(hosted.address, task.address, round_)] = work
        return evaluation_view(work.details)

    return host.start_job("evaluate", hosted.address, task.address, work)


def evaluation_view(details: Any) -> dict[str, Any]:
    return {
        "round": details.round,
        "accuracy": from_fixed(details.accuracy),
        "loss": from_fixed(details.loss),
        "workers": [
            {
                "worker": r["worker"],
                "loss": None if r["loss"] is None else from_fixed(r["loss"]),
                "qualified": r["accepted"],
                "samples": r["samples"],
                "contribution": from_fixed(r["contribution"]),
            }
            for r in details.results
        ],
    }


def committee_member(host: Host, task: Task, account: str) -> HostedAccount:
    hosted = act_as(host, account, "validator")
    if hosted.address not in task.committee():
        raise Forbidden(f"{hosted.label} is not on this task's committee")
    return hosted


def commit(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = committee_member(host, task, account)
    status, round_ = task.status(), task.current_round()
    if status is not Status.EVALUATING:
        raise Conflict(f"manifests are committed while EVALUATING; the task is {status.name}")
    if task.ballot_of(round_, hosted.address) != bytes(32):
        raise Conflict(f"{hosted.label} already committed its manifest for round {round_}")
    work = host.work.get((hosted.address, task.address, round_))
    if work is None:
        raise Conflict(f"{hosted.label} has not evaluated round {round_} yet: evaluate first")
    tx = host.validators[hosted.address].commit_manifest(task, work)
    return summary(tx, f"{hosted.label} committed its manifest")


def reveal(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = committee_member(host, task, account)
    status, round_ = task.status(), task.current_round()
    if status is not Status.REVEALING:
        raise Conflict(f"manifests are revealed while REVEALING; the task is {status.name}")
    if task.ballot_of(round_, hosted.address) == bytes(32):
        raise Conflict(f"{hosted.label} did not commit a manifest in round {round_}: nothing to reveal")
    if hosted.address in task.revealed_manifests(round_):
        raise Conflict(f"{hosted.label} already revealed its manifest for round {round_}")
    validator = host.validators[hosted.address]
    work = host.work.get((hosted.address, task.address, round_)) or validator.recover(task, round_)
    if work is None:
        raise Conflict(f"{hosted.label} cannot rebuild the manifest it committed in round {round_}")
    tx = validator.reveal_manifest(task, work)
    if tx is None:
        raise Conflict(f"{hosted.label} does not reveal its manifest")
    host.work.pop((hosted.address, task.address, round_), None)
    return summary(tx, f"{hosted.label} revealed its manifest")


# ---------------------------------------------------------------------------------------------- anyone


def finalize(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = acting(host, account)
    status = task.status()
    if status is not Status.REWARDING:
        raise Conflict(f"a round is finalized in the REWARDING phase; the task is {status.name}")
    tx = task.finalize_round(hosted.account)
    score_latest_consensus(host, task)
    return summary(tx, "round settled" if "RoundFinalized" in tx.names() else "no consensus: escrow refunded")


def score_latest_consensus(host: Host, task: Task) -> None:
    """Retrieve and score (its test accuracy) the task's latest consensus model once, when its round is
    settled (here and in auto mode), so that no page decrypts or evaluates a model while it renders. A
    model this server cannot open (no requester key, a missing file) is left unscored."""
    round_ = task.last_consensus_round()
    if round_ and (task.address, round_) not in host.models:
        with contextlib.suppress(ProtocolError, StorageError):
            consensus_model(host, task, round_)


def advance(host: Host, task: Task, account: str) -> dict[str, Any]:
    """Move a phase on after its deadline; on the demo's dev chain, first jump the clock to it."""
    hosted = acting(host, account)
    status = task.status()
    if not has_deadline(task, status):
        raise Conflict(f"the task is {status.name}: it has no deadline to pass")
    if host.demo and host.chain.now() <= task.deadline():
        host.chain.increase_time(task.deadline() - host.chain.now() + 1)
    tx = task.advance(hosted.account)
    return summary(tx, f"deadline passed: the task is now {task.status().name}")


def predict(host: Host, pixels: list[float], task_address: str | None) -> dict[str, Any]:
    """The latest consensus model of `task` (default: the newest task with one) on a drawn digit: 784
    grey levels in [0, 1] (0 is the background), normalised as the models were trained."""
    candidates = [task_of(host, task_address)] if task_address else _tasks_newest_first(host)
    for task in candidates:
        round_ = task.last_consensus_round()
        if round_:
            state, _ = consensus_model(host, task, round_)
            probabilities = classify_digit(resolve_model(description_of(task).model), state, pixels)
            if probabilities is None:
                raise Conflict(f"the consensus model of round {round_} gives no finite prediction")
            best = max(range(10), key=lambda i: probabilities[i])
            return {"task": task.address, "round": round_, "prediction": best, "probabilities": probabilities}
    raise Conflict("no task has a consensus model yet: finish a round first")


def _tasks_newest_first(host: Host) -> list[Task]:
    return [host.known_task(address) for address in reversed(host.registered_tasks())]


ERRORS = (ContractRevert, ChainError, ProtocolError)
__all__ = ["ERRORS", "Conflict", "Forbidden", "Invalid", "NotFound", "consensus_details"]
