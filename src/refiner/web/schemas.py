"""The JSON the web API speaks (pydantic models; FastAPI publishes them in its OpenAPI document)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from refiner.config import TaskSection
from refiner.units import ONE

Address = str
ADDRESS = r"^0x[0-9a-fA-F]{40}$"
BUILTIN_MODELS = ("small_cnn", "mnist_cnn", "logistic")
#: Bounds a web request may set (the hosted workers train what it asks for).
MAX_EPOCHS, MAX_BATCH_SIZE, MAX_DATA_FORMAT = 50, 10_000, 500


class ErrorOut(BaseModel):
    detail: str = Field(min_length=1, description="one sentence saying what is wrong")


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class InvalidOut(BaseModel):
    detail: str | list[FieldError] = Field(
        description="one sentence, or FastAPI's list of the fields the JSON schema refuses"
    )


class AccountOut(BaseModel):
    address: Address
    label: str
    role: Literal["requester", "worker", "validator"]
    balance_wei: str


class SessionOut(BaseModel):
    demo: bool
    mode: Literal["manual", "auto"]
    registry: Address
    accounts: list[AccountOut]


class ModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["manual", "auto"]


class AsAccount(BaseModel):
    """Who acts: one of the accounts this server holds keys for."""

    model_config = ConfigDict(extra="forbid")
    account: Address = Field(min_length=42, max_length=42, pattern=ADDRESS)


class CreateTaskIn(AsAccount):
    settings: TaskSection

    @field_validator("settings", mode="before")
    @classmethod
    def _fits_fixed_point(cls, settings: Any) -> Any:
        # the chain keeps ε and μ in fixed point (× 10^6): a float too large for that is refused here,
        # before TaskSection's own checks convert it (which overflow on it)
        if isinstance(settings, dict):
            for key in ("epsilon", "mu"):
                value = settings.get(key)
                if isinstance(value, float) and math.isfinite(value) and not math.isfinite(value * ONE):
                    raise ValueError(f"{key} {value:g} is too large")
        return settings

    @field_validator("settings")
    @classmethod
    def _builtin_model(cls, settings: TaskSection) -> TaskSection:
        # a web request must not make the server import a module of its choosing
        if settings.model not in BUILTIN_MODELS:
            raise ValueError(f"model must be one of {', '.join(BUILTIN_MODELS)} here")
        # nor train or deploy without bound
        if settings.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be at most {MAX_EPOCHS} here")
        if settings.batch_size > MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be at most {MAX_BATCH_SIZE} here")
        if len(settings.data_format) > MAX_DATA_FORMAT:
            raise ValueError(f"data_format must be at most {MAX_DATA_FORMAT} characters here")
        return settings


class FundIn(AsAccount):
    amount: str | int = Field(description="e.g. '1 ether', '2000 gwei', or an integer of wei")


class TrainIn(AsAccount):
    dataset: Literal["good", "bad"] = "good"


class ClaimIn(AsAccount):
    round: int = Field(ge=1, le=2**32 - 1)


class PredictIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    pixels: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        min_length=784, max_length=784, description="28×28 grey levels in [0, 1], row by row; 0 is background"
    )
    task: Address | None = Field(default=None, pattern=ADDRESS)


class PredictOut(BaseModel):
    task: Address | None
    round: int
    prediction: int
    probabilities: list[float]


class DigitOut(BaseModel):
    index: int
    label: int
    pixels: list[float] = Field(description="28×28 grey levels in [0, 1], row by row, as /api/predict takes")


class TaskSummary(BaseModel):
    address: Address
    requester: Address
    status: str
    round: int
    max_rounds: int
    workers: int
    max_workers: int
    seats: int
    committee_size: int
    budget_wei: str


class MemberOut(BaseModel):
    address: Address
    label: str
    weight: int


class RoundOut(BaseModel):
    round: int
    submissions: int
    commits: int
    reveals: int
    finalized: bool
    consensus: bool | None
    validation_accuracy: float | None
    test_accuracy: float | None
    accepted: list[Address]
    rejected: list[Address]
    contributions: dict[Address, int]
    reasons: dict[Address, str]
    worker_payouts_wei: dict[Address, str]
    validator_payouts_wei: dict[Address, str]
    agreeing: list[Address]
    disagreeing: list[Address]
    gas_used: int


class TaskDetail(TaskSummary):
    deadline: int
    now: int
    escrow_wei: str
    deposits_held_wei: str
    owed_wei: str
    balance_wei: str
    #: The initial model's test accuracy (round 0 of the learning curve), once round 1 has started.
    initial_test_accuracy: float | None = None
    config: dict[str, Any]
    members: list[Address]
    committee: list[MemberOut]
    rounds: list[RoundOut]


class NextOut(BaseModel):
    """The demo's next step: who takes it, how (`POST /api/tasks/{task}/<action>`), and every hosted
    account the same action is due for now (the page's "for all" button)."""

    account: str
    label: str
    step: str
    round: int
    text: str
    action: str
    accounts: list[str]


class GuideOut(BaseModel):
    """What an account may do now on a task (each page action: null when allowed, else why not), its
    claims per settled round, and the demo's next step."""

    account: str
    actions: dict[str, str | None]
    claims: dict[str, str | None]
    next: NextOut | None
    #: When nobody hosted here has a step to take: what the task waits for (whose move, the deadline).
    waiting: str | None = None


class ActivityEntry(BaseModel):
    seq: int
    at: float = Field(description="seconds since the epoch")
    level: Literal["debug", "info", "warning", "error", "critical"]
    text: str


class ActivityOut(BaseModel):
    """Auto mode's feed: what the hosted agents did and what they wait for, oldest first."""

    mode: Literal["manual", "auto"]
    entries: list[ActivityEntry]


class ActionOut(BaseModel):
    ok: bool = True
    message: str
    gas_used: int | None = None
    events: list[str] = []
    job: str | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    account: Address
    task: Address
    state: Literal["running", "done", "failed"]
    progress: float
    message: str
    result: dict[str, Any]


class RewardOut(BaseModel):
    task: Address
    round: int
    amount_wei: str


class AccountDetail(AccountOut):
    rewards: list[RewardOut]
    tasks: list[Address]
