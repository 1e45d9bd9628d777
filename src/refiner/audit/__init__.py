"""Anyone can audit a task's full record (``refiner audit TASK [--round R]``).

From the chain's events and the manifests in the store, :func:`audit_task` checks that every revealed
manifest opens its commitment, recomputes the consensus from the seats' weights, checks the consensus
manifest's stored details against the submissions, recomputes every payment to the wei, and checks the
task's Ether ledger. Given the requester's key (the one party every round's inputs, updates and aggregates
are encrypted to besides the committee) it also re-runs the evaluation and compares it with the consensus
manifest: the only check a colluding committee majority cannot pass. Each round gets a :class:`Verdict`.
"""

from refiner.audit.core import audit_task
from refiner.audit.render import render
from refiner.audit.report import AuditError, Check, RoundAudit, TaskAudit, Verdict, exit_code

__all__ = ["AuditError", "Check", "RoundAudit", "TaskAudit", "Verdict", "audit_task", "exit_code", "render"]
