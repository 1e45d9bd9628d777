"""Shared models as a participant opens them: fetched, decrypted with its own key and validated against
the task's model spec (safetensors only; a pickle is named and never loaded)."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from refiner.chain import Task
from refiner.fl.models import ModelSpec, ModelValidationError, State, deserialize
from refiner.sharing import Context, SharingError, retrieve
from refiner.storage import Handle, StorageError, Store
from refiner.wire.details import ProtocolError
from refiner.wire.reads import round_inputs


def open_model(
    store: Store, model: Handle, keys: Handle, context: Context, account: LocalAccount, spec: ModelSpec
) -> State:
    """Fetch, decrypt and validate a shared model as `account`; a pickle gets a message saying so."""
    data = retrieve(store, model, keys, context, account, max_bytes=spec.max_bytes)
    try:
        return deserialize(data, spec)
    except ModelValidationError as exc:
        if data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or a bare pickle stream
            raise ModelValidationError(
                f"the model file looks like a pickle (torch.save), not safetensors; never unpickled ({exc})"
            ) from None
        raise


def previous_model(
    store: Store, task: Task, round_: int, requester: str, account: LocalAccount, spec: ModelSpec
) -> State | None:
    """The model round ``round_ − 1`` started from, which the task's committee (fixed for the task) was
    sent then; None in round 1 or when it cannot be opened (the screen then skips its stale test)."""
    if round_ <= 1:
        return None
    try:
        handles = round_inputs(task, round_ - 1)
        context = Context(task.address, round_ - 1, requester, "model")
        return open_model(store, handles["modelHandle"], handles["modelKeysHandle"], context, account, spec)
    except (ProtocolError, StorageError, SharingError, ModelValidationError, ValueError):
        return None
