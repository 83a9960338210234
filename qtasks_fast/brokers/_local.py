"""What the in-process brokers (SQLite, memory) share: enqueue is one local write, sync or async."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.abc.broker import Broker

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.schemas import Envelope


class LocalBroker(Broker):
    """A broker whose enqueue needs no network: the async and sync paths are the same call."""

    @abc.abstractmethod
    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool) -> None:
        """Queue the envelopes (and their ``new`` records when ``rec``)."""

    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> None:
        rec = self.fused(storage)
        if not rec:
            await storage.create(envelopes, wait)
        self._insert(envelopes, wait, rec)

    def enqueue_sync(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> None:
        rec = self.fused(storage)
        if not rec:
            storage.create_sync(envelopes, wait)
        self._insert(envelopes, wait, rec)
