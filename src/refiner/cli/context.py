"""What every command shares: the options naming the chain, the store, the key and the registry, their
defaults from `refiner.toml`, and turning the errors users can cause into one clear line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.markup import escape
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from refiner.chain import Chain, ChainError, Registry, Task
from refiner.chain.accounts import KeystoreError, load_keystore
from refiner.config import ClientSettings, ConfigError, load_settings, parse_address
from refiner.storage import StorageError, Store, open_store
from refiner.units import ether

if TYPE_CHECKING:
    from refiner.fl.models import ModelFn

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="refiner.toml with defaults (else $REFINER_CONFIG, ./refiner.toml)"),
]
ChainOpt = Annotated[str | None, typer.Option("--chain", help="JSON-RPC URL of the node, or 'embedded'")]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="store URL: a directory, dir:///path or ipfs:///repo?...")
]
KeystoreOpt = Annotated[
    Path | None,
    typer.Option("--keystore", help="encrypted key file (password from $REFINER_PASSWORD or a prompt)"),
]
RegistryOpt = Annotated[str | None, typer.Option("--registry", help="address of the RefinerRegistry")]
WeiOpt = Annotated[bool, typer.Option("--wei", help="amounts as exact wei instead of ETH")]

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, width=140)


def funds(wei: int, exact: bool = False) -> str:
    """An amount for people: ETH to 6 decimals (`refiner.units.ether`), or the exact wei with --wei."""
    return f"{wei} wei" if exact else ether(wei)


def fail(message: str, code: int = 1) -> NoReturn:
    # the message is text, not markup ("[task]" must show); soft wrap: one line per line, at any width
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user can cause (bad config, unreachable node, wrong password, refused call) → one line."""
    try:
        yield
    except (ConfigError, ChainError, KeystoreError, StorageError, ValueError, OSError) as exc:
        fail(str(exc))
    except (BadFunctionCallOutput, ContractLogicError) as exc:  # a read from a contract that is not ours
        fail(f"a contract call failed: is the address a Refiner contract on this chain? ({exc})")


@dataclass
class Ctx:
    settings: ClientSettings
    _chain: Chain | None = field(default=None, init=False)
    _store: Store | None = field(default=None, init=False)
    _account: LocalAccount | None = field(default=None, init=False)
    _registry: Registry | None = field(default=None, init=False)
    _models: dict[str, ModelFn] | None = field(default=None, init=False)

    @classmethod
    def load(
        cls,
        config: Path | None = None,
        chain: str | None = None,
        storage: str | None = None,
        keystore: Path | None = None,
        registry: str | None = None,
    ) -> Ctx:
        with user_errors():
            settings = load_settings(config).merged(
                chain=chain, storage=storage, keystore=keystore, registry=registry
            )
        return cls(settings)

    @property
    def chain(self) -> Chain:
        if self._chain is None:
            with user_errors():
                self._chain = Chain.connect(self.settings.chain)
        return self._chain

    @property
    def store(self) -> Store:
        if self._store is None:
            if not self.settings.storage:
                fail(
                    "no store: pass --storage URL (a shared directory or ipfs:///repo) "
                    "or set it in refiner.toml"
                )
            with user_errors():
                self._store = open_store(self.settings.storage)
        return self._store

    @property
    def account(self) -> LocalAccount:
        if self._account is None:
            path = self.settings.keystore
            if path is None:
                fail("no key: pass --keystore PATH (create one with `refiner account new`)")
            with user_errors():
                self._account = load_keystore(path, password(self.settings.password_env))
        return self._account

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            address = self.settings.registry
            if not address:
                fail("no registry: pass --registry ADDRESS (printed by `refiner admin deploy-registry`)")
            registry = Registry(self.chain, address)
            self._probe(registry.owner, registry.address, "registry")
            self._registry = registry
        return self._registry

    def task(self, address: str) -> Task:
        """The task contract at `address`, checked to be one before anything is sent to it (a transfer
        to an address without code succeeds, and the Ether is lost)."""
        with user_errors():
            task = Task(self.chain, parse_address(address))
        self._probe(task.registry, task.address, "task")
        return task

    def _probe(self, read: Callable[[], object], address: str, what: str) -> None:
        with user_errors():
            try:
                read()
            except (BadFunctionCallOutput, ContractLogicError):
                fail(f"no Refiner {what} at {address} on {self.settings.chain}")

    def merge(self, **overrides: object) -> None:
        """Settings from more command-line options (before anything is connected)."""
        with user_errors():
            self.settings = self.settings.merged(**overrides)
        self._models = None

    @property
    def models(self) -> dict[str, ModelFn]:
        """The operator's own models (``[models]`` in refiner.toml, ``--model``), imported here: local
        configuration, never a task's words."""
        from refiner.fl.models import local_models

        if self._models is None:
            with user_errors():
                self._models = local_models(self.settings.models)
        return self._models

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def password(env: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        fail(f"the keystore password is not in ${env} and there is no terminal to ask for it")
    return str(typer.prompt("keystore password", hide_input=True))


def setup_logging(level: str = "INFO", name: str | None = None) -> logging.Logger:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("web3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"refiner.agent.{name}" if name else "refiner.agent")
