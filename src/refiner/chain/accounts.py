"""Ethereum accounts: deterministic demo keys, and the public key a participant registers.

The 64-byte secp256k1 public key registered on chain is the account's own key, so what others encrypt
to (ECIES) is the key that signs the account's transactions.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys
from eth_utils import keccak

__all__ = ["LocalAccount", "demo_account", "from_key", "public_key_bytes"]


def demo_account(label: str) -> LocalAccount:
    """A deterministic account for demos and tests: the key is keccak256("refiner-demo:" + label).

    Never use these keys with real Ether: anyone can derive them.
    """
    return from_key(keccak(text=f"refiner-demo:{label}"))


def from_key(private_key: bytes | str) -> LocalAccount:
    account: LocalAccount = Account.from_key(private_key)
    return account


def public_key_bytes(account: LocalAccount) -> bytes:
    """The account's uncompressed public key without the 0x04 prefix (x ‖ y, 64 bytes)."""
    return keys.PrivateKey(account.key).public_key.to_bytes()
