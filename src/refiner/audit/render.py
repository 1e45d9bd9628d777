"""Rich rendering of a :class:`TaskAudit`: a table per round (check, mark, detail) and its verdict."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from refiner.audit.report import Check, TaskAudit, Verdict

_MARKS = {True: Text("✓", style="green"), False: Text("✗", style="bold red"), None: Text("?", style="yellow")}
_STYLES = {
    Verdict.PASS: "bold green",
    Verdict.FAIL: "bold red",
    Verdict.INCOMPLETE: "bold yellow",
    Verdict.IN_PROGRESS: "bold cyan",
}


def _table(title: str, checks: list[Check]) -> Table:
    table = Table(title=title, title_justify="left", show_header=True, expand=False)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("", justify="center", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for c in checks:
        table.add_row(c.name, _MARKS[c.ok], c.detail)
    return table


def render(audit: TaskAudit) -> RenderableType:
    key = "with the requester's and a committee member's keys" if audit.with_requester else "without all keys"
    parts: list[RenderableType] = [
        Text(f"Audit of task {audit.task} ({audit.status.name}), {key}", style="bold")
    ]
    for r in audit.rounds:
        parts.append(_table(f"Round {r.round}", r.checks))
        parts.append(Text.assemble("verdict: ", (r.verdict.value, _STYLES[r.verdict]), "\n"))
    if audit.checks:
        parts.append(_table("Task", audit.checks))
    return Group(*parts)
