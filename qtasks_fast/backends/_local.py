"""What the in-process brokers (SQLite, memory) share: enqueue is one local write, sync or async."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.broker import Broker, Delivery, Outcome
from qtasks_fast.abc.capabilities import Delays, UniqueKeys
from qtasks_fast.schemas import META_UNIQUE, Envelope

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

_env_decode = msgspec.msgpack.Decoder(Envelope).decode


def has_unique(envelopes: Sequence[Envelope]) -> bool:
    """Any unique-enqueue envelope in the batch (one dict lookup each; plain batches pay nothing else)."""
    for e in envelopes:
        if e.meta and META_UNIQUE in e.meta:
            return True
    return False


class LocalBroker(Broker, Delays, UniqueKeys):
    """A broker whose enqueue needs no network: the async and sync paths are the same call. Its one local
    write holds delayed envelopes and claims unique keys (both capabilities are declared here).

    With a fused storage one local write claims unique keys, creates records and
    queues messages together. With a foreign storage the order is: claim unique
    keys (so skipped envelopes get no record), ``storage.create`` the rest, then
    queue them — records exist before any worker can fetch the message.
    """

    @abc.abstractmethod
    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool, unique: bool = True) -> dict[str, str]:
        """Queue the envelopes (delayed ones by ``eta``; records too when ``rec``) in one atomic step.

        With ``unique`` the ``META_UNIQUE`` keys are claimed in the same step; returns the skipped ones.
        """

    @abc.abstractmethod
    def _claim_unique(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        """Claim the unique keys of a batch on their own; ``{skipped uuid: holder uuid}``."""

    def _split(self, envelopes: Sequence[Envelope]) -> tuple[Sequence[Envelope], dict[str, str]]:
        if not has_unique(envelopes):
            return envelopes, {}
        skipped = self._claim_unique(envelopes)
        return ([e for e in envelopes if e.uuid not in skipped] if skipped else envelopes), skipped

    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> dict[str, str]:
        if self.fused(storage):
            return self._insert(envelopes, wait, True)
        kept, skipped = self._split(envelopes)
        if kept:
            await storage.create(kept, wait)
            self._insert(kept, wait, False, unique=False)
        return skipped

    def enqueue_sync(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> dict[str, str]:
        if self.fused(storage):
            return self._insert(envelopes, wait, True)
        kept, skipped = self._split(envelopes)
        if kept:
            storage.create_sync(kept, wait)
            self._insert(kept, wait, False, unique=False)
        return skipped


def body_outcome(queue: str, prio: int, msg_id: object, body: bytes, deliveries: int, status: str,
                 text: str) -> list[Outcome]:
    """The outcome a foreign storage must save for a message finished by the broker itself (dead-lettered,
    cancelled, purged); none when the body does not decode (there is no uuid to report on)."""
    d = Delivery(queue, prio, msg_id, body, deliveries)
    try:
        d.envelope = _env_decode(body)
    except Exception:  # noqa: BLE001 - also a body nested too deeply to decode (RecursionError)
        return []
    return [(d, status, b"\xc0", text, "")]


def decoded(body: bytes) -> list[Envelope]:
    """``[envelope]`` of a raw body, ``[]`` when it does not decode."""
    try:
        return [_env_decode(body)]
    except Exception:  # noqa: BLE001 - also a body nested too deeply to decode (RecursionError)
        return []


def task_name_of(body: bytes) -> str | None:
    """The task name in a raw body, or None when it does not decode (dead-letter listings: whatever the
    body holds, even what makes the decoder fail otherwise, such as nesting too deep, must not stop one)."""
    try:
        return next((e.task_name for e in decoded(body)), None)
    except Exception:  # noqa: BLE001 - a listing shows the letter without a name rather than fail
        return None


def text(raw: bytes | str | None) -> str:
    """A stored field as text: bytes that are not UTF-8 escaped (``\\xff``), never an error."""
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")
