"""Turn a contract's revert data into a readable, typed Python exception."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_tester.exceptions import TransactionFailed
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3.exceptions import ContractCustomError, ContractLogicError

from refiner.chain.build import DEPLOYABLE, load_artifact


class ChainError(RuntimeError):
    """A chain operation failed for a reason other than a contract's own refusal."""


@dataclass(frozen=True)
class _ErrorAbi:
    name: str
    names: tuple[str, ...]
    types: tuple[str, ...]


class ContractRevert(ChainError):
    """A contract refused a call with a custom error, e.g. ``WrongStatus(actual=2)``."""

    def __init__(self, error: str, args: dict[str, Any], raw: bytes = b"") -> None:
        self.error = error
        self.args_by_name = args
        self.raw = raw
        shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
        super().__init__(f"{error}({shown})")


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)


def _canonical(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


@cache
def _errors_by_selector() -> dict[bytes, _ErrorAbi]:
    table: dict[bytes, _ErrorAbi] = {}
    for contract in DEPLOYABLE:
        for item in load_artifact(contract).abi:
            if item["type"] != "error":
                continue
            types = tuple(_canonical(i) for i in item["inputs"])
            signature = f"{item['name']}({','.join(types)})"
            table[function_signature_to_4byte_selector(signature)] = _ErrorAbi(
                item["name"], tuple(i["name"] for i in item["inputs"]), types
            )
    # Solidity's built-in Error(string) and Panic(uint256).
    table[function_signature_to_4byte_selector("Error(string)")] = _ErrorAbi(
        "Error", ("message",), ("string",)
    )
    table[function_signature_to_4byte_selector("Panic(uint256)")] = _ErrorAbi(
        "Panic", ("code",), ("uint256",)
    )
    return table


def decode_revert(data: bytes | str | None) -> ContractRevert:
    """Decode revert data (selector + ABI-encoded arguments) into a :class:`ContractRevert`."""
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x"))
    if not data:
        return ContractRevert("Reverted", {}, b"")
    spec = _errors_by_selector().get(data[:4])
    if spec is None:
        return ContractRevert("UnknownError", {"data": data}, data)
    try:
        decoded = decode(list(spec.types), data[4:])
    except DecodingError:  # another contract's error with the same selector, or truncated data
        return ContractRevert("UnknownError", {"data": data}, data)
    values = [
        to_checksum_address(v) if t == "address" else v for t, v in zip(spec.types, decoded, strict=True)
    ]
    return ContractRevert(spec.name, dict(zip(spec.names, values, strict=True)), data)


#: The exceptions web3 and eth-tester raise for a refused call.
REVERTS = (ContractCustomError, ContractLogicError, TransactionFailed)


def refusal(exc: BaseException) -> ContractRevert:
    """The contract's refusal behind a failed call: its custom error, or a `require` message."""
    data = revert_data(exc)
    if data is None:
        reason = _REASON_TEXT.search(str(exc))
        if reason:  # the embedded EVM gives `require` messages as text
            return ContractRevert("Error", {"message": reason.group(1).strip()})
    return decode_revert(data)


_REASON_TEXT = re.compile(r"execution reverted: (?!b['\"])(.+)", re.DOTALL)


def revert_data(exc: BaseException) -> bytes | str | None:
    """The revert data behind `exc`: web3 puts it in ``.data``; the embedded EVM raises its own
    ``TransactionFailed`` whose (chained) cause carries the raw bytes."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some nodes wrap it: {"data": "0x…"}
        data = data.get("data")
    if isinstance(data, (bytes, str)) and data:
        return data
    seen: BaseException | None = exc
    while seen is not None:
        if seen.args and isinstance(seen.args[0], bytes):
            return seen.args[0]
        if seen.args and isinstance(seen.args[0], str):  # eth_call: "execution reverted: b'…'"
            found = _BYTES_REPR.search(seen.args[0])
            if found:
                value = ast.literal_eval(found.group(0))
                if isinstance(value, bytes):
                    return value
        seen = seen.__cause__ or seen.__context__
    return None


_BYTES_REPR = re.compile(r"""b(['"]).*\1""", re.DOTALL)
