"""The JSON API behind every panel (FastAPI; OpenAPI at /openapi.json, docs at /docs) and the pages.

Errors a user can cause come back as 4xx with ``{"detail": "<one clear sentence>"}``: 403 when the
account may not take the step (wrong role, not its task, no key here), 404 for an unknown task, job,
round or account, 409 when the step is not possible now (wrong phase, already done, busy, not enough
Ether, the contract refused it), 422 for malformed input (FastAPI's list of field errors when the JSON
schema already says so), 400 when the body cannot even be read. Only the errors named here become a
4xx: anything else is a bug, logged, and a 500.

Only loopback `Host` names are served, and every state-changing call needs the session's token in the
``X-Refiner-Token`` header (403 without it); the page at ``/`` carries it (see `refiner.web.guard`).
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from refiner.chain import ChainError, ContractRevert, Status
from refiner.config import UINT256, ConfigError, parse_wei
from refiner.fl.inference import grey_levels
from refiner.fl.models import serialize
from refiner.sharing import SharingError
from refiner.storage import StorageError
from refiner.web import guide, services, views
from refiner.web.auto import AutoPilot
from refiner.web.guard import LOOPBACK, TOKEN_HEADER, new_token, protect
from refiner.web.host import Conflict, Forbidden, Host, Invalid, NotFound
from refiner.web.schemas import (
    ADDRESS,
    AccountDetail,
    ActionOut,
    ActivityOut,
    AsAccount,
    ClaimIn,
    CreateTaskIn,
    DigitOut,
    ErrorOut,
    FundIn,
    GuideOut,
    InvalidOut,
    JobOut,
    ModeIn,
    PredictIn,
    PredictOut,
    SessionOut,
    TaskDetail,
    TaskSummary,
    TrainIn,
)
from refiner.wire.details import ProtocolError
from refiner.wire.spec import DescriptionError

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "vendor"  # front-end packages copied from npm by the Makefile (package data)
log = logging.getLogger("refiner.web")

_STATUS: list[tuple[tuple[type[BaseException], ...], int]] = [
    ((Forbidden,), 403),
    ((NotFound,), 404),
    # ContractRevert is a ChainError; ProtocolError: a step off chain is impossible (data missing, …);
    # storage, sharing and description errors: a peer's file or a task's description is unusable
    ((Conflict, ChainError, ProtocolError, SharingError, StorageError, DescriptionError), 409),
    ((Invalid, ConfigError), 422),
]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not readable (not UTF-8 JSON)"},
    403: {"model": ErrorOut, "description": "The account may not take this step"},
    404: {"model": ErrorOut, "description": "Unknown task, job, round or account"},
    409: {"model": ErrorOut, "description": "Not possible now (phase, already done, busy, refused)"},
    422: {"model": InvalidOut, "description": "Malformed input"},
}

TaskAddress = Annotated[str, PathParam(pattern=ADDRESS, description="the task contract's address")]


def create_app(host: Host, token: str | None = None, hosts: Sequence[str] = LOOPBACK) -> FastAPI:
    """The server for `host`: served under the `hosts` names only, its state-changing calls taking
    `token` (a fresh one by default; ``app.state.token``)."""
    token = token or new_token()
    app = FastAPI(
        title="Refiner",
        summary="Reliable, incentive-driven federated learning on Ethereum: the demo's panels as an API.",
        description=f"Every POST takes the session's token in the `{TOKEN_HEADER}` header: the page at `/` "
        'carries it (`<meta name="refiner-token">`) and `refiner serve` prints it. Only loopback Host '
        "names are served.",
        version="0.1",
        responses=ERROR_RESPONSES,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: /docs below serves the pinned copy
        redoc_url=None,
    )
    pilot = AutoPilot(host)
    app.state.host, app.state.pilot, app.state.token = host, pilot, token
    protect(app, token, hosts)
    page = (STATIC / "index.html").read_text().replace("{{token}}", html.escape(token))

    def guarded(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except HTTPException:
            raise
        except Exception as exc:
            for types, code in _STATUS:
                if isinstance(exc, types):
                    raise HTTPException(code, _message(exc)) from None
            raise

    def manual() -> None:
        if pilot.running:
            raise HTTPException(409, "auto mode is on: the agents act; switch to manual mode to act by hand")

    def step(task: str, fn: Callable[..., dict[str, Any]], body: AsAccount, *args: Any) -> ActionOut:
        manual()
        return ActionOut(**guarded(lambda: fn(host, services.task_of(host, task), body.account, *args)))

    @app.get("/api/session", response_model=SessionOut)
    def session() -> dict[str, Any]:
        accounts = [
            {
                "address": a,
                "label": h.label,
                "role": h.role,
                "balance_wei": str(host.chain.w3.eth.get_balance(h.account.address)),
            }
            for a, h in host.accounts.items()
        ]
        return {
            "demo": host.demo,
            "mode": "auto" if pilot.running else "manual",
            "registry": host.registry.address,
            "accounts": accounts,
        }

    @app.get("/api/activity", response_model=ActivityOut)
    def activity(
        after: Annotated[int, Query(ge=0, description="only entries numbered above this")] = 0,
    ) -> dict[str, Any]:
        entries = [e.__dict__ for e in host.activity.since(after)]
        return {"mode": "auto" if pilot.running else "manual", "entries": entries}

    @app.post("/api/mode", response_model=SessionOut)
    def set_mode(body: ModeIn) -> dict[str, Any]:
        if body.mode == "auto":
            pilot.start()
        else:
            pilot.stop()
        return session()

    @app.get("/api/accounts/{address}", response_model=AccountDetail)
    def account(address: Annotated[str, PathParam(pattern=ADDRESS)]) -> dict[str, Any]:
        return guarded(lambda: views.account_detail(host, address))  # type: ignore[no-any-return]

    @app.get("/api/tasks", response_model=list[TaskSummary])
    def tasks() -> list[dict[str, Any]]:
        found = host.registered_tasks()
        return guarded(  # type: ignore[no-any-return]
            lambda: [views.task_summary(services.task_of(host, a)) for a in reversed(found)]
        )

    @app.post("/api/tasks", response_model=TaskSummary, status_code=201)
    def create_task(body: CreateTaskIn) -> dict[str, Any]:
        manual()
        task = guarded(lambda: services.create_task(host, body.account, body.settings))
        return views.task_summary(task)

    @app.get("/api/tasks/{task}", response_model=TaskDetail)
    def task_detail(task: TaskAddress) -> dict[str, Any]:
        return guarded(lambda: views.task_detail(host, services.task_of(host, task)))  # type: ignore[no-any-return]

    @app.get("/api/tasks/{task}/guide", response_model=GuideOut)
    def task_guide(
        task: TaskAddress,
        account: Annotated[str, Query(pattern=ADDRESS, description="a hosted account")],
    ) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            return guide.view(host, services.task_of(host, task), services.acting(host, account).address)

        return guarded(read)  # type: ignore[no-any-return]

    @app.post("/api/tasks/{task}/open-recruitment", response_model=ActionOut)
    def open_recruitment(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.open_recruitment, body)

    @app.post("/api/tasks/{task}/close-recruitment", response_model=ActionOut)
    def close_recruitment(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.close_recruitment, body)

    @app.post("/api/tasks/{task}/start-round", response_model=ActionOut)
    def start_round(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.start_round, body)

    @app.post("/api/tasks/{task}/stop-training", response_model=ActionOut)
    def stop_training(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.stop_training, body)

    @app.post("/api/tasks/{task}/fund", response_model=ActionOut)
    def fund(task: TaskAddress, body: FundIn) -> ActionOut:
        try:
            amount = parse_wei(body.amount)
        except ValueError as exc:
            raise HTTPException(422, f"amount: {exc}") from None
        if not 0 < amount <= UINT256:
            raise HTTPException(422, "amount: it must be more than 0 and at most 2^256 - 1 wei")
        return step(task, services.fund, body, amount)

    @app.post("/api/tasks/{task}/withdraw", response_model=ActionOut)
    def withdraw(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.withdraw, body)

    @app.post("/api/tasks/{task}/sign-up", response_model=ActionOut)
    def sign_up(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.sign_up, body)

    @app.post("/api/tasks/{task}/train", response_model=ActionOut)
    def train(task: TaskAddress, body: TrainIn) -> ActionOut:
        manual()
        job = guarded(lambda: services.train(host, services.task_of(host, task), body.account, body.dataset))
        return ActionOut(message=f"training on the {body.dataset} dataset", job=job.id)

    @app.post("/api/tasks/{task}/claim-seat", response_model=ActionOut)
    def claim_seat(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.claim_seat, body)

    @app.post("/api/tasks/{task}/evaluate", response_model=ActionOut)
    def evaluate(task: TaskAddress, body: AsAccount) -> ActionOut:
        manual()
        job = guarded(lambda: services.evaluate_updates(host, services.task_of(host, task), body.account))
        return ActionOut(message="evaluating every update", job=job.id)

    @app.post("/api/tasks/{task}/commit-manifest", response_model=ActionOut)
    def commit_manifest(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.commit, body)

    @app.post("/api/tasks/{task}/reveal-manifest", response_model=ActionOut)
    def reveal_manifest(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.reveal, body)

    @app.post("/api/tasks/{task}/finalize-round", response_model=ActionOut)
    def finalize_round(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.finalize, body)

    @app.post("/api/tasks/{task}/advance", response_model=ActionOut)
    def advance(task: TaskAddress, body: AsAccount) -> ActionOut:
        return step(task, services.advance, body)

    @app.post("/api/tasks/{task}/claim-reward", response_model=ActionOut)
    def claim_reward(task: TaskAddress, body: ClaimIn) -> ActionOut:
        return step(task, services.claim_reward, body, body.round)

    @app.get(
        "/api/tasks/{task}/model",
        responses={200: {"content": {"application/octet-stream": {}}, "description": "safetensors"}},
    )
    def model(
        task: TaskAddress,
        account: Annotated[str, Query(pattern=ADDRESS, description="the task's requester")],
    ) -> Response:
        def fetch() -> bytes:
            t = services.task_of(host, task)
            services.requester_of(host, t, account)
            _, state = services.latest_model(host, t)
            return serialize(state)

        data = guarded(fetch)
        headers = {"Content-Disposition": f'attachment; filename="refiner-{task[:10]}.safetensors"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def job(job_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")]) -> Any:
        found = host.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return found.__dict__

    @app.post("/api/predict", response_model=PredictOut)
    def predict(body: PredictIn) -> dict[str, Any]:
        return guarded(lambda: services.predict(host, body.pixels, body.task))  # type: ignore[no-any-return]

    @app.get("/api/mnist/{index}", response_model=DigitOut)
    def digit(index: int) -> dict[str, Any]:
        if not 0 <= index < len(host.test):
            raise HTTPException(404, f"MNIST's test split has images 0 to {len(host.test) - 1}")
        return {
            "index": index,
            "label": int(host.test.y[index]),
            "pixels": grey_levels(host.test.x[index]),
        }

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's list of field errors, made JSON-safe (a NaN or Infinity sent is echoed as a string)
        # and cut short (a list of 784 wrong pixels says no more than its first few)
        errors = _json_safe(jsonable_encoder(list(exc.errors())[:MAX_FIELD_ERRORS]))
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        # the token lives as long as the server: a page cached from an earlier one would be refused
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if not (VENDOR / "swagger-ui-bundle.js").is_file():
            return HTMLResponse(NO_DOCS, status_code=404)
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title="Refiner API",
            swagger_js_url="/vendor/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if VENDOR.is_dir():
        app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    return app


MAX_FIELD_ERRORS = 10
NO_DOCS = (
    "<p>The API page needs Swagger UI's files, which `make setup` copies from npm into "
    "src/refiner/web/vendor; the schema itself is at <a href='/openapi.json'>/openapi.json</a>.</p>"
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _message(exc: BaseException) -> str:
    if isinstance(exc, ContractRevert):
        return refusal(exc)
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    return str(exc).strip() or type(exc).__name__


#: What the contracts' custom errors mean, for the ones a panel action can run into.
REFUSALS = {
    "NotRequester": "only the task's requester may do this",
    "RecruitmentAlreadyOpened": "recruitment was opened already",
    "RecruitmentNotClosed": "recruitment is not closed yet",
    "DeadlinePassed": "the phase's deadline has passed",
    "DeadlineNotReached": "the phase's deadline has not passed yet",
    "AlreadySignedUp": "this worker signed up already",
    "WorkersFull": "the task has all the workers it takes",
    "CommitteeFull": "the committee is full",
    "AlreadyOnCommittee": "this validator holds its seats already",
    "SeedNotReady": "the sortition seed block is not mined yet",
    "NotSelected": "sortition did not select this validator",
    "NoWorkers": "no worker has signed up",
    "NoCommittee": "no validator holds a committee seat",
    "InsufficientBudget": "the budget does not cover the round's rewards",
    "NotSignedUp": "this worker has not signed up to the task",
    "AlreadySubmitted": "this worker submitted already in this round",
    "NotOnCommittee": "this validator is not on the committee",
    "AlreadyCommitted": "this validator committed already in this round",
    "NotCommitted": "this validator did not commit in this round",
    "AlreadyRevealed": "this validator revealed already in this round",
    "CommitmentMismatch": "the manifest does not match the commitment",
    "RoundNotFinalized": "the round is not finalized yet",
    "AlreadyClaimed": "the reward was claimed already (a claim pays every earlier round too)",
    "ClaimWindowClosed": "the task's claim window has closed",
    "NoReward": "there is no reward to claim",
    "ClaimWindowOpen": "the claim window is still open",
    "NothingToRelease": "there is nothing to release",
    "AmountExceedsBudget": "the amount exceeds the budget",
    "ZeroAmount": "the amount is zero",
}


def refusal(exc: ContractRevert) -> str:
    """``the contract refused (WrongStatus): the task is PENDING`` and the like."""
    if exc.error == "WrongStatus":
        actual = exc.args_by_name.get("actual")
        name = Status(actual).name if actual in set(Status) else actual
        return f"the contract refused (WrongStatus): the task is {name}"
    if exc.error == "InvalidConfig":
        return f"the contract refused (InvalidConfig): {exc.args_by_name.get('reason')}"
    if exc.error == "Panic" and exc.args_by_name.get("code") == 0x11:
        return "the contract refused (Panic 0x11): a number overflowed; a setting of the task is too large"
    meaning = REFUSALS.get(exc.error)
    return f"the contract refused ({exc}): {meaning}" if meaning else f"the contract refused: {exc}"
