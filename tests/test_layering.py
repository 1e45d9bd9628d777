"""The package's layers (docs/architecture.md): each top-level module imports only from the layers below.

Read from the source (every ``import``, including those inside functions), so a lazy import that breaks
the layering fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "refiner"

GROUND = {"units", "safejson"}  # import nothing of Refiner's
#: What each top-level module may import of Refiner, besides itself and the ground floor.
MAY_IMPORT: dict[str, set[str]] = {
    "units": set(),
    "safejson": set(),
    "sharing": set(),
    "sortition": set(),
    "storage": set(),
    "fl": set(),  # pure learning: no chain, storage or roles
    "parallel": {"fl"},  # where the pure learning jobs run (Ray)
    "chain": {"sortition"},
    "reasons": {"chain"},
    "protocol": {"chain"},
    # the records participants exchange and the queries that read them: no role code
    "wire": {"chain", "fl", "reasons", "sharing", "storage"},
    "roles": {"chain", "fl", "sharing", "sortition", "storage", "wire"},
    "adversary": {"chain", "fl", "roles", "storage", "wire"},
    "cast": {"adversary", "chain", "fl", "roles", "storage"},
    "audit": {"chain", "fl", "sharing", "storage", "wire"},  # reads: never a role's code
    "simulation": {"cast", "chain", "fl", "parallel", "protocol", "reasons", "roles", "storage", "wire"},
    "agents": {"chain", "fl", "protocol", "reasons", "roles", "storage", "wire"},
    "config": {"chain", "fl", "wire"},
    "scripted_round": {"chain", "protocol"},
    "cost": {"chain"},
    "demo": {"chain", "config", "fl", "parallel", "roles", "simulation", "storage", "wire"},
    "web": {
        "agents",
        "cast",
        "chain",
        "config",
        "fl",
        "protocol",
        "reasons",
        "roles",
        "sharing",
        "storage",
        "wire",
    },
    "cli": {
        "adversary",
        "agents",
        "audit",
        "chain",
        "config",
        "cost",
        "demo",
        "fl",
        "roles",
        "scripted_round",
        "storage",
        "web",
        "wire",
    },
    "__main__": {"cli"},
}
#: Third-party libraries a layer must not import itself: the web maps HTTP to roles and protocol calls
#: (models run in fl/), the learning code knows no chain.
MUST_NOT_IMPORT: dict[str, set[str]] = {
    "fl": {"web3", "eth_account", "fastapi", "typer", "rich"},
    "chain": {"torch", "fastapi"},
    "units": {"torch", "web3"},
    "web": {"torch", "typer"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def layer_of(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0].removesuffix(".py")


def test_every_module_imports_only_from_the_layers_below() -> None:
    broken = []
    for path in sorted(SRC.rglob("*.py")):
        layer = layer_of(path)
        if layer == "__init__":
            continue
        allowed = MAY_IMPORT[layer] | GROUND | {layer}
        for name in imports_of(path):
            top, _, rest = name.partition(".")
            if top == "refiner" and rest and rest.split(".")[0] not in allowed:
                broken.append(f"{path.relative_to(SRC)} imports {name}")
            if top in MUST_NOT_IMPORT.get(layer, set()):
                broken.append(f"{path.relative_to(SRC)} imports {name}")
    assert broken == []


def test_the_table_names_every_top_level_module() -> None:
    layers = {layer_of(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert layers == set(MAY_IMPORT)
    assert all(MAY_IMPORT[g] == set() for g in GROUND)
