"""What participants exchange, as every one of them and every reader (audit, web) reads it: the task
description (`spec`), the manifest details (`details`), a validator's salts and memos (`memos`) and the
read queries over the chain and the store (`reads`). Roles, the audit and the web import it alike."""

from refiner.wire.details import MAX_DETAILS, ManifestDetails, ProtocolError, load_details, store_details
from refiner.wire.reads import consensus_details, description_of, model_of, round_inputs
from refiner.wire.spec import TaskDescription

__all__ = [
    "MAX_DETAILS",
    "ManifestDetails",
    "ProtocolError",
    "TaskDescription",
    "consensus_details",
    "description_of",
    "load_details",
    "model_of",
    "round_inputs",
    "store_details",
]
