"""Types of the compiled dispatch core (``_core.pyx``)."""

import uuid
from typing import Any

from qtasks_fast.schemas import Envelope
from qtasks_fast.task import TaskFunc

class Delivery:
    queue: str
    prio: Any
    msg_id: Any
    raw: bytes
    deliveries: Any
    envelope: Envelope
    handler: TaskFunc
    started: float
    fetched: float
    def __init__(self, queue: str, prio: Any, msg_id: Any, raw: bytes, deliveries: Any) -> None: ...

def decode_batch(queue: str, flat: list[Any], handlers: dict[str, Any], max_size: int, ready: list[Delivery],
                 bad: list[tuple[Delivery, str]]) -> None: ...
def add_entries(flat: list[Any], prio: int, entries: Any) -> int: ...
def entry_body(fields: Any) -> bytes: ...
def encode(value: Any) -> bytes: ...
def encode_envelopes(envelopes: list[Envelope]) -> list[bytes]: ...
def new_uuid() -> tuple[uuid.UUID, str]: ...
