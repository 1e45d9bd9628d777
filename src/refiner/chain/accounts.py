"""Ethereum accounts: deterministic demo keys, and the public key a participant registers.

The 64-byte secp256k1 public key registered on chain is the account's own key, so what others encrypt
to (ECIES) is the key that signs the account's transactions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import keccak

from refiner.sortition.vrf import VrfKey

__all__ = [
    "KeystoreError",
    "LocalAccount",
    "demo_account",
    "from_key",
    "load_keystore",
    "public_key_bytes",
    "save_keystore",
    "vrf_key_for",
]


class KeystoreError(ValueError):
    """A keystore file could not be read or opened."""


def demo_account(label: str) -> LocalAccount:
    """A deterministic account for demos and tests: the key is keccak256("refiner-demo:" + label).

    Never use these keys with real Ether: anyone can derive them.
    """
    return from_key(keccak(text=f"refiner-demo:{label}"))


def vrf_key_for(account: LocalAccount) -> VrfKey:
    """A VRF key derived from the account key (a different scalar: a VRF proof never reveals the account
    key). Derived so that a restarted validator finds its key again; a key generated on its own
    (``VrfKey.generate()``) kept in its own keystore is the stronger choice."""
    return VrfKey.from_seed_bytes(b"account:" + bytes(account.key))


def from_key(private_key: bytes | str) -> LocalAccount:
    account: LocalAccount = Account.from_key(private_key)
    return account


def public_key_bytes(account: LocalAccount) -> bytes:
    """The account's uncompressed public key without the 0x04 prefix (x ‖ y, 64 bytes)."""
    return keys.PrivateKey(account.key).public_key.to_bytes()


def save_keystore(account: LocalAccount, path: str | os.PathLike[str], password: str) -> Path:
    """Write `account`'s key as an encrypted keystore file (scrypt, readable by the owner only)."""
    if not password:
        raise KeystoreError("refusing to write a keystore with an empty password")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(Account.encrypt(account.key, password))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    return target


def load_keystore(path: str | os.PathLike[str], password: str) -> LocalAccount:
    """The account in an encrypted keystore file."""
    try:
        body = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise KeystoreError(f"no keystore file at {path}") from None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"{path} is not a keystore file: {exc}") from None
    try:
        return from_key(Account.decrypt(body, password))
    except ValueError as exc:
        raise KeystoreError(f"cannot open keystore {path}: {exc}") from None
