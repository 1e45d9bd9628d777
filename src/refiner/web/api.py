"""The JSON API behind every panel (FastAPI; OpenAPI at /openapi.json, docs at /docs) and the pages.

Errors a user can cause come back as 4xx with ``{"detail": "<one clear sentence>"}``: 403 when the
account may not take the step, 404 for an unknown task, job or account, 409 when the step is not
possible now (wrong phase, already done, the contract refused it), 422 for malformed input.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from refiner.chain import ChainError, ContractRevert
from refiner.config import ConfigError, parse_wei
from refiner.fl.models import serialize
from refiner.roles.participant import ProtocolError
from refiner.sharing import SharingError
from refiner.storage import StorageError
from refiner.web import services, views
from refiner.web.auto import AutoPilot
from refiner.web.host import Host
from refiner.web.schemas import (
    AccountDetail,
    ActionOut,
    AsAccount,
    ClaimIn,
    CreateTaskIn,
    DigitOut,
    FundIn,
    JobOut,
    ModeIn,
    PredictIn,
    PredictOut,
    SessionOut,
    TaskDetail,
    TaskSummary,
    TrainIn,
)

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).resolve().parents[3] / "build" / "web" / "vendor"

_STATUS: list[tuple[tuple[type[BaseException], ...], int]] = [
    ((services.Forbidden,), 403),
    ((LookupError,), 404),
    (
        (
            services.Conflict,
            ContractRevert,
            ChainError,
            ProtocolError,
            SharingError,
            StorageError,
            RuntimeError,
        ),
        409,
    ),
    ((ConfigError, ValueError), 422),
]


def create_app(host: Host) -> FastAPI:
    app = FastAPI(
        title="Refiner",
        summary="Reliable, incentive-driven federated learning on Ethereum: the demo's panels as an API.",
        version="0.1",
    )
    pilot = AutoPilot(host)
    app.state.host, app.state.pilot = host, pilot

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

    @app.post("/api/mode", response_model=SessionOut)
    def set_mode(body: ModeIn) -> dict[str, Any]:
        if body.mode == "auto":
            pilot.start()
        else:
            pilot.stop()
        return session()

    @app.get("/api/accounts/{address}", response_model=AccountDetail)
    def account(address: str) -> dict[str, Any]:
        return guarded(lambda: views.account_detail(host, address))  # type: ignore[no-any-return]

    @app.get("/api/tasks", response_model=list[TaskSummary])
    def tasks() -> list[dict[str, Any]]:
        found = host.registry.get_events("TaskRegistered")
        return [views.task_summary(services.task_of(host, e["task"])) for e in reversed(found)]

    @app.post("/api/tasks", response_model=TaskSummary, status_code=201)
    def create_task(body: CreateTaskIn) -> dict[str, Any]:
        manual()
        task = guarded(lambda: services.create_task(host, body.account, body.settings))
        return views.task_summary(task)

    @app.get("/api/tasks/{task}", response_model=TaskDetail)
    def task_detail(task: str) -> dict[str, Any]:
        return guarded(lambda: views.task_detail(host, services.task_of(host, task)))  # type: ignore[no-any-return]

    @app.post("/api/tasks/{task}/open-recruitment", response_model=ActionOut)
    def open_recruitment(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.open_recruitment, body)

    @app.post("/api/tasks/{task}/close-recruitment", response_model=ActionOut)
    def close_recruitment(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.close_recruitment, body)

    @app.post("/api/tasks/{task}/start-round", response_model=ActionOut)
    def start_round(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.start_round, body)

    @app.post("/api/tasks/{task}/stop-training", response_model=ActionOut)
    def stop_training(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.stop_training, body)

    @app.post("/api/tasks/{task}/fund", response_model=ActionOut)
    def fund(task: str, body: FundIn) -> ActionOut:
        amount = guarded(lambda: parse_wei(body.amount))
        if amount <= 0:
            raise HTTPException(422, "the amount must be positive")
        return step(task, services.fund, body, amount)

    @app.post("/api/tasks/{task}/withdraw", response_model=ActionOut)
    def withdraw(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.withdraw, body)

    @app.post("/api/tasks/{task}/sign-up", response_model=ActionOut)
    def sign_up(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.sign_up, body)

    @app.post("/api/tasks/{task}/train", response_model=ActionOut)
    def train(task: str, body: TrainIn) -> ActionOut:
        manual()
        job = guarded(lambda: services.train(host, services.task_of(host, task), body.account, body.dataset))
        return ActionOut(message=f"training on the {body.dataset} dataset", job=job.id)

    @app.post("/api/tasks/{task}/claim-seat", response_model=ActionOut)
    def claim_seat(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.claim_seat, body)

    @app.post("/api/tasks/{task}/evaluate", response_model=ActionOut)
    def evaluate(task: str, body: AsAccount) -> ActionOut:
        manual()
        job = guarded(lambda: services.evaluate_updates(host, services.task_of(host, task), body.account))
        return ActionOut(message="evaluating every update", job=job.id)

    @app.post("/api/tasks/{task}/commit-manifest", response_model=ActionOut)
    def commit_manifest(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.commit, body)

    @app.post("/api/tasks/{task}/reveal-manifest", response_model=ActionOut)
    def reveal_manifest(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.reveal, body)

    @app.post("/api/tasks/{task}/finalize-round", response_model=ActionOut)
    def finalize_round(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.finalize, body)

    @app.post("/api/tasks/{task}/advance", response_model=ActionOut)
    def advance(task: str, body: AsAccount) -> ActionOut:
        return step(task, services.advance, body)

    @app.post("/api/tasks/{task}/claim-reward", response_model=ActionOut)
    def claim_reward(task: str, body: ClaimIn) -> ActionOut:
        return step(task, services.claim_reward, body, body.round)

    @app.get(
        "/api/tasks/{task}/model",
        responses={200: {"content": {"application/octet-stream": {}}, "description": "safetensors"}},
    )
    def model(task: str, account: str) -> Response:
        def fetch() -> bytes:
            t = services.task_of(host, task)
            services.requester_of(host, t, account)
            _, state = services.latest_model(host, t)
            return serialize(state)

        data = guarded(fetch)
        headers = {"Content-Disposition": f'attachment; filename="refiner-{task[:10]}.safetensors"'}
        return Response(data, media_type="application/octet-stream", headers=headers)

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def job(job_id: str) -> Any:
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
            "pixels": [round(float(v), 4) for v in host.test.x[index].flatten()],
        }

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if VENDOR.is_dir():
        app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    return app


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ContractRevert):
        return f"the contract refused: {text}"
    return text
