"""JSON from peers, parsed without letting deep nesting crash the process.

The json module parses recursively, and py_ecc (imported with the chain layer) raises Python's recursion
limit to 100,000, so ~100,000 nested brackets overflow the C stack and kill the process (measured:
SIGSEGV) instead of raising. Everything Refiner reads from a peer (key envelopes, manifest details,
safetensors headers) nests a few levels; :func:`loads` refuses anything deeper than `MAX_DEPTH` first.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

MAX_DEPTH = 32


class TooDeep(ValueError):
    """The JSON nests deeper than allowed."""


def depth(data: bytes) -> int:
    """How deeply arrays and objects nest in JSON text `data`, brackets inside strings not counted;
    linear and without recursion."""
    brackets = data.count(b"[") + data.count(b"{")
    if brackets <= MAX_DEPTH:
        return brackets  # cannot nest deeper than it has brackets
    # drop escaped backslashes, then escaped quotes: every quote left opens or closes a string, so the
    # even pieces between quotes are what lies outside strings
    bare = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(bare.split(b'"')[::2])
    codes = np.frombuffer(outside, dtype=np.uint8)
    steps = ((codes == ord("[")) | (codes == ord("{"))).astype(np.int8)
    steps -= ((codes == ord("]")) | (codes == ord("}"))).astype(np.int8)
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def check(data: bytes, what: str, max_depth: int = MAX_DEPTH) -> None:
    found = depth(data)
    if found > max_depth:
        raise TooDeep(f"{what} nests JSON {found} levels deep, more than {max_depth}")


def loads(data: bytes | str, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` after the depth check (TooDeep or json.JSONDecodeError, both ValueErrors)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    check(raw, what, max_depth)
    return json.loads(raw)
