"""The machine-readable task description stored in the task contract's `description`.

The contract keeps the description as free text; Refiner writes a JSON document into it that tells every
participant the data format, the model architecture (so that everyone can validate weights against the
same spec), the local-training hyper-parameters, and the requester's public key (to which validators
encrypt their aggregated models). Anybody can check that key against the task's requester address.
It also names the contribution measure the validators use (``contribution``; leave-one-out unless
the description says otherwise, so descriptions written before the field existed keep their meaning).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from eth_utils import keccak, to_checksum_address

Contribution = Literal["leave-one-out", "gtg-shapley"]  # = refiner.fl.contribution.MeasureName
CONTRIBUTIONS: tuple[str, ...] = get_args(Contribution)
DEFAULT_CONTRIBUTION: Contribution = "leave-one-out"


class DescriptionError(ValueError):
    """The task's description is not a Refiner task description, or it is inconsistent."""


@dataclass(frozen=True)
class TaskDescription:
    requester_public_key: str  # hex of the 64-byte secp256k1 key (x ‖ y)
    data_format: str = "MNIST: 1x28x28 float32 images scaled to [0, 1], labels 0-9"
    model: str = "small_cnn"
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.1
    max_model_bytes: int = 64 << 20
    contribution: Contribution = DEFAULT_CONTRIBUTION  # how validators score workers

    def __post_init__(self) -> None:
        if self.contribution not in CONTRIBUTIONS:
            raise DescriptionError(
                f"unknown contribution measure {self.contribution!r}: use one of {list(CONTRIBUTIONS)}"
            )

    def to_json(self) -> str:
        body = asdict(self)
        if body["contribution"] == DEFAULT_CONTRIBUTION:
            del body["contribution"]  # the default stays implicit: such descriptions read as before
        return json.dumps({"refiner": 1, **body}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskDescription:
        try:
            body = json.loads(text)
            if body.pop("refiner", None) != 1:
                raise ValueError("missing 'refiner': 1")
            return cls(**body)
        except (ValueError, TypeError) as exc:
            raise DescriptionError(f"not a Refiner task description ({exc}): {text[:80]!r}") from None

    def requester_key(self, requester: str) -> bytes:
        """The requester's public key, checked against its address."""
        key = bytes.fromhex(self.requester_public_key.removeprefix("0x"))
        if len(key) != 64 or to_checksum_address(keccak(key)[12:]) != to_checksum_address(requester):
            raise DescriptionError(f"the description's public key does not belong to requester {requester}")
        return key
