"""Types of the Redis backend's compiled packing (``_pack.pyx``)."""

from typing import Any

from qtasks_fast.schemas import Envelope

def enqueue_args(envelopes: list[Envelope], blobs: list[bytes], wait: str) -> dict[str, tuple[bytes, bytes, bytes]]: ...
def settle_args(outcomes: list[Any], index: bool, worker: str,
                now: str, mono: float = 0.0,
                carried: dict[str, list[str]] | None = None) -> dict[str, tuple[bytes, bytes, bytes, list[Any]]]: ...
def event_json(payload: bytes, ms: int, seq: int, queue: str, queue_json: bytes, first: int, limit: int,
               ids: list[str], data: list[bytes]) -> int: ...
