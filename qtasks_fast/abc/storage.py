"""Storage contract: task records (status, result, traceback) keyed by uuid.

Records move ``new -> process -> success | error | cancel``. The producer
creates ``new``; the broker marks ``process`` when it hands a message out; the
worker saves the final state through :meth:`Storage.save` *before* the broker
acks, so a stored final state is never lost to a crash.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.abc.broker import NotSupported, backend_repr

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome
    from qtasks_fast.schemas import Envelope, Task


class Storage(abc.ABC):
    """Keeps task records for ``result_ttl`` seconds after they finish."""

    result_ttl: float = 86400.0

    def __repr__(self) -> str:
        return backend_repr(self)

    @abc.abstractmethod
    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        """Write ``new`` records; ``wait`` marks them as awaited by a producer."""

    @abc.abstractmethod
    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        """Write final states (idempotent: a rerun after a crash overwrites).

        An outcome is ``(delivery, status, msgpack returning, traceback or "", retry child uuid or "")``;
        ``delivery.envelope`` holds the call. Wake anyone blocked in :meth:`wait` on it.
        """

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        """Set status ``process``; called by a broker that cannot do it in its own fetch."""

    @abc.abstractmethod
    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        """The record, or None when unknown or expired."""

    @abc.abstractmethod
    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        """Block (no polling loop where the backend can avoid it) until the record is final.

        Returns the final record, the current one if ``timeout`` runs out, or None if unknown.
        ``fresh`` says the caller itself just enqueued the task with ``wait=True`` (a hint
        that lets a backend skip its first lookup); follow ``retry_child_uuid`` of an error.
        """

    # ------------------------------------------- optional: delete finished records (QTasks delete_finished_tasks)
    async def delete_finished(self, queues: Sequence[str]) -> int:
        """Delete the records (and task logs) of every finished task (success, error, cancel) of ``queues``;
        returns how many. Queued and running tasks keep theirs. A storage without it raises NotSupported."""
        raise NotSupported(self, "deleting finished records (config.delete_finished_tasks)")

    # ----------------------------------------------------------- optional: task logs
    # Lines a worker captured while a task ran (qtasks_fast.middlewares.logs.LogCapture), kept as long
    # as the task's record (result_ttl). A storage without them raises NotSupported.
    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        """Append ``lines`` to the log of task ``uuid`` of ``queue``; expire them with the record."""
        raise NotSupported(self, "task logs (append_logs/get_logs)")

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        """The log lines of task ``uuid`` of ``queue`` in order; ``[]`` when it has none (or they expired)."""
        raise NotSupported(self, "task logs (append_logs/get_logs)")

    def get_logs_sync(self, uuid: str, queue: str) -> list[str]:
        from qtasks_fast.portal import portal

        return portal().run(self.get_logs(uuid, queue))

    def create_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        from qtasks_fast.portal import portal

        portal().run(self.create(envelopes, wait))

    def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None:
        from qtasks_fast.portal import portal

        return portal().run(self.get(uuid, queues))

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        from qtasks_fast.portal import portal

        return portal().run(self.wait(uuid, queues, timeout, fresh))

    async def close(self) -> None:
        """Release connections."""

    def close_sync(self) -> None:
        """Release what the blocking ``*_sync`` methods opened (the sync client's ``close()``); the storage
        reconnects if used again. Nothing by default."""
