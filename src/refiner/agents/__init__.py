"""Long-running participant agents for multi-process deployments (`refiner worker run`, `refiner
validator run`, `refiner requester run`, `refiner storage serve`): each follows the chain with a block
cursor and acts on what is due, using the same role code as the in-process demo."""

from refiner.agents.base import Agent
from refiner.agents.cursor import BlockCursor
from refiner.agents.requester import RequesterAgent
from refiner.agents.terms import Terms
from refiner.agents.validator import ValidatorAgent
from refiner.agents.worker import WorkerAgent
from refiner.protocol import chain_now

__all__ = ["Agent", "BlockCursor", "RequesterAgent", "Terms", "ValidatorAgent", "WorkerAgent", "chain_now"]
