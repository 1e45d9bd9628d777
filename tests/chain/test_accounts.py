"""Accounts: deterministic demo keys, registered public keys, encrypted keystore files."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_utils import keccak, to_checksum_address

from refiner.chain.accounts import (
    KeystoreError,
    demo_account,
    load_keystore,
    public_key_bytes,
    save_keystore,
)


def test_demo_accounts_are_deterministic_and_distinct() -> None:
    assert demo_account("a").address == demo_account("a").address
    assert demo_account("a").address != demo_account("b").address


def test_public_key_hashes_to_the_address() -> None:
    account = demo_account("worker")
    key = public_key_bytes(account)
    assert len(key) == 64
    assert to_checksum_address(keccak(key)[12:]) == account.address


def test_keystore_round_trip(tmp_path: Path) -> None:
    account = demo_account("keystore")
    path = save_keystore(account, tmp_path / "keys" / "validator.json", "correct horse")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_keystore(path, "correct horse").key == account.key


def test_keystore_refusals(tmp_path: Path) -> None:
    account = demo_account("keystore")
    path = save_keystore(account, tmp_path / "k.json", "pw")
    with pytest.raises(KeystoreError, match="cannot open keystore"):
        load_keystore(path, "wrong")
    with pytest.raises(KeystoreError, match="no keystore file"):
        load_keystore(tmp_path / "missing.json", "pw")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeystoreError, match="not a keystore file"):
        load_keystore(tmp_path / "bad.json", "pw")
    with pytest.raises(KeystoreError, match="empty password"):
        save_keystore(account, tmp_path / "empty.json", "")
    with pytest.raises(FileExistsError):  # never overwrite a key
        save_keystore(account, path, "pw")
