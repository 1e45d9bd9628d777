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

from refiner.chain import ChainError, ContractRevert, Task, TxResult, public_key_bytes
from refiner.chain.backends import EMBEDDED_GAS_LIMIT
from refiner.fl.evaluation import evaluate
from refiner.fl.inference import classify_digit
from refiner.fl.models import State, initial_state, resolve_model
from refiner.protocol import Role, Step, has_deadline, why_not
from refiner.roles.requester import shortfall
from refiner.storage import StorageError
from refiner.units import ether, from_fixed
from refiner.web.host import Conflict, Forbidden, Host, HostedAccount, Invalid, Job, NotFound
from refiner.wire.details import ProtocolError
from refiner.wire.reads import consensus_details, description_of


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


def require(task: Task, hosted: HostedAccount, step: Step, round_: int | None = None) -> None:
    """Refuse a step the protocol does not let `hosted` take now (`refiner.protocol.why_not`): 403 when
    the account may never take it on this task, 409 when it is not its time (or was taken)."""
    refused = why_not(task, hosted.address, Role(hosted.role), step, round_=round_)
    if refused is not None:
        error = Forbidden if refused.standing else Conflict
        raise error(f"{hosted.label} cannot {step.value.replace('_', ' ')}: {refused.reason}")


def summary(tx: TxResult | None, message: str) -> dict[str, Any]:
    if tx is None:
        return {"message": message}
    return {"message": message, "gas_used": tx.gas_used, "events": tx.names()}


def refusal(exc: BaseException) -> Conflict:
    return Conflict(str(exc))


# ---------------------------------------------------------------------------------------------- requester


def requester_of(host: Host, task: Task, account: str, step: Step | None = None) -> Any:
    """The hosted requester of `task` (that takes `step`, refused unless the protocol lets it now)."""
    hosted = act_as(host, account, "requester")
    if task.requester() != hosted.address:
        raise Forbidden(f"{hosted.label} is not the requester of task {task.address}")
    if step is not None:
        require(task, hosted, step)
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
    tx = requester_of(host, task, account, Step.OPEN_RECRUITMENT).open_recruitment(task)
    if host.demo and host.chain.manual_clock:
        # past the seed block (the next epoch's first), so validators can draw at once
        host.chain.mine(max(1, task.seed_block() + 1 - host.chain.w3.eth.block_number))
    return summary(tx, "recruitment opened: workers may sign up, validators draw their seats")


def close_recruitment(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account, Step.CLOSE_RECRUITMENT).close_recruitment(task)
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
    requester = requester_of(host, task, account, Step.START_ROUND)
    cfg, budget, missing = task.config(), task.budget(), shortfall(task)
    ensure_funds(host, host.accounts[requester.address], missing, "the round's rewards")
    score_initial_model(host, task)
    if host.validation is None:
        raise Conflict("this server holds no validation data to share with the committee")
    round_, state = latest_model(host, task)
    tx = requester.start_round(task, state, host.validation)
    message = f"round {task.current_round()} started from the model of round {round_}"
    if missing:  # never take more than the budget without saying so
        message += (
            f"; the budget held {ether(budget)} of the round's "
            f"{ether(cfg.worker_reward + cfg.validator_reward)}, so {ether(missing)} came from the "
            "requester's account"
        )
    return summary(tx, message)


def stop_training(host: Host, task: Task, account: str) -> dict[str, Any]:
    tx = requester_of(host, task, account, Step.STOP_TRAINING).stop_training(task)
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
    require(task, hosted, Step.SIGN_UP)
    tx = host.workers[hosted.address].sign_up(task)
    return summary(tx, f"{hosted.label} signed up")


def train(host: Host, task: Task, account: str, dataset: str) -> Job:
    """Train on the good or the bad (shuffled-label) dataset and submit (a background job)."""
    hosted = act_as(host, account, "worker")
    require(task, hosted, Step.SUBMIT_TRAINING_RESULTS)
    round_ = task.current_round()
    worker = host.workers[hosted.address]
    if dataset == "bad":
        if hosted.address not in host.bad_data:
            raise Invalid("this server holds only the worker's own data: train on the good dataset")
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
    require(task, hosted, Step.CLAIM_REWARD, round_)
    if hosted.role == "worker":
        wei = host.workers[hosted.address].claim_reward(task, round_)
    else:
        wei = host.validators[hosted.address].claim_reward(task, round_)
    if not wei:
        unpaid = "its update was rejected or did not improve the model"
        return {"message": f"{hosted.label} earns nothing for round {round_}: {unpaid}"}
    return {"message": f"{hosted.label} received {wei} wei for round {round_}"}


# ---------------------------------------------------------------------------------------------- validators


def claim_seat(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    require(task, hosted, Step.CLAIM_SEAT)
    validator = host.validators[hosted.address]
    ticket = validator.sortition(task)
    if ticket.seats == 0:
        host.not_selected.add((hosted.address, task.address))
        return {
            "message": f"{hosted.label} was not selected ({ticket.stake_units} of {ticket.total_units} units)"
        }
    tx = task.claim_seat(hosted.account, ticket.proof, ticket.seats)
    return summary(tx, f"{hosted.label} won {ticket.seats} seat(s)")


def evaluate_updates(host: Host, task: Task, account: str) -> Job:
    hosted = act_as(host, account, "validator")
    # after its commitment, a second evaluation would share a new aggregate: the committed manifest
    # could not be revealed
    require(task, hosted, Step.COMMIT_MANIFEST)
    validator = host.validators[hosted.address]
    round_ = task.current_round()

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


def commit(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    require(task, hosted, Step.COMMIT_MANIFEST)
    round_ = task.current_round()
    work = host.work.get((hosted.address, task.address, round_))
    if work is None:
        raise Conflict(f"{hosted.label} has not evaluated round {round_} yet: evaluate first")
    tx = host.validators[hosted.address].commit_manifest(task, work)
    return summary(tx, f"{hosted.label} committed its manifest")


def reveal(host: Host, task: Task, account: str) -> dict[str, Any]:
    hosted = act_as(host, account, "validator")
    require(task, hosted, Step.REVEAL_MANIFEST)
    round_ = task.current_round()
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
    require(task, hosted, Step.FINALIZE_ROUND)
    tx = task.finalize_round(hosted.account)
    score_latest_consensus(host, task)
    return summary(tx, "round settled" if "RoundFinalized" in tx.names() else "no consensus: escrow refunded")


def score_initial_model(host: Host, task: Task) -> None:
    """Score the task's initial model once (round 0 of the learning curve), as its first round starts
    (here and in auto mode), never while a page renders."""
    if (task.address, 0) not in host.models:
        factory = resolve_model(description_of(task).model)
        state = initial_state(factory, 0)
        host.models[(task.address, 0)] = (state, evaluate(factory, state, host.test).accuracy)


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
        raise Conflict(
            f"{hosted.label} cannot advance: the task is {status.name}: it has no deadline to pass"
        )
    if host.demo and host.chain.now() <= task.deadline():
        host.chain.increase_time(task.deadline() - host.chain.now() + 1)
    require(task, hosted, Step.ADVANCE)
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
