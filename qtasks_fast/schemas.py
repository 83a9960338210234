"""Wire and record types.

Everything that crosses a process is one of these msgspec Structs encoded with
msgpack (never pickle). Field names on the wire are one or two letters because
the envelope is encoded once per task on the hot path; unknown fields are
ignored on decode so that an older worker can read a newer producer's message.
"""

from __future__ import annotations

import datetime as _dt
import enum
import uuid as _uuid
from typing import Any

import msgspec


class TaskStatus(str, enum.Enum):
    """Lifecycle of a task record, as in QTasks."""

    NEW = "new"
    PROCESS = "process"
    SUCCESS = "success"
    ERROR = "error"
    CANCEL = "cancel"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.ERROR, TaskStatus.CANCEL)


class Envelope(msgspec.Struct, omit_defaults=True):
    """One task call as it travels through the broker."""

    uuid: str = msgspec.field(name="u")
    task_name: str = msgspec.field(name="n")
    args: list[Any] = msgspec.field(name="a", default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(name="k", default_factory=dict)
    priority: int = msgspec.field(name="p", default=0)
    queue: str = msgspec.field(name="q", default="default")
    created_at: float = msgspec.field(name="t", default=0.0)
    #: retries still allowed after this attempt
    retry: int = msgspec.field(name="r", default=0)
    retry_parent_uuid: str | None = msgspec.field(name="rp", default=None)
    #: seconds the task may run (QTasks ``max_time``); None = no limit
    timeout: float | None = msgspec.field(name="x", default=None)
    #: free-form headers for middlewares and plugins (keys the runtime itself uses: see ``META_*``)
    meta: dict[str, Any] = msgspec.field(name="m", default_factory=dict)
    #: unix time before which the task must not run (countdown / eta / retry backoff); 0 = now.
    #: A broker holds such an envelope durably and makes it deliverable when due.
    eta: float = msgspec.field(name="e", default=0.0)


#: ``Envelope.meta`` keys the runtime reads. Plugins use their own keys (prefix them with the plugin's name).
#: ``[key, ttl seconds]``: enqueue is a no-op when ``key`` was claimed within ttl (unique enqueue)
META_UNIQUE = "uq"
#: remaining steps of a chain: list of ``[task_name, args, kwargs]``; the worker enqueues the next on success
META_CHAIN = "ch"
#: uuid of the task this one restarts (``app.restart``)
META_RESTART_OF = "rs"
#: ``[group id, size]`` of a ``group(...)`` member
META_GROUP = "gr"
#: retry attempt number (0 for the first run), for backoff
META_ATTEMPT = "at"
#: ``[key, holder uuid]`` or None: the caller's unique key that this task's final failure or cancel releases.
#: A retry child carries its first attempt's (the key names that one), a chain step None (its own key is internal)
META_UNIQUE_OWNER = "uh"
#: set by the Redis broker when the producer that enqueued the envelope awaits its result: the settle
#: pushes the record to the task's reply list directly (no lookup in the P:wait set on either side)
META_REPLY = "rw"


class Task(msgspec.Struct, kw_only=True):
    """A task record as returned by ``add_task`` and ``get`` (QTasks fields).

    ``retry`` is the number of retries *left* after this attempt, not how many were made: ``retry=3``
    on a first attempt that fails gives a child with ``retry=2``, and so on to 0. A failure that
    ``retry_on_exc`` does not name is final with retries still left in ``retry``.
    """

    status: str
    uuid: _uuid.UUID
    priority: int
    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    created_at: _dt.datetime
    updated_at: _dt.datetime
    returning: Any = None
    traceback: str | None = None
    #: retries left after this attempt (not retries made): ``retry=N`` of the task on the first attempt, one
    #: less on each retry child, 0 on the last; ``retry_parent_uuid`` links back to the attempt before
    retry: int | None = None
    retry_child_uuid: _uuid.UUID | None = None
    retry_parent_uuid: _uuid.UUID | None = None
    worker_id: str | None = None
    queue: str = "default"
    #: the task this one restarts (``app.restart``), None otherwise
    restart_of: _uuid.UUID | None = None
    #: how many times the finished task's message was delivered: 1 normally, 2+ when it was handed out
    #: again (a worker crashed, an outage, a lost lease), so a duplicate run shows here
    deliveries: int = 1

    @property
    def finished(self) -> bool:
        return TaskStatus(self.status).finished


def ts_to_dt(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


def task_from_envelope(env: Envelope, status: str, *, updated: float | None = None, returning: bytes = b"",
                       traceback: str | None = None, retry_child: str | None = None, worker_id: str | None = None,
                       queue: str | None = None, uuid: _uuid.UUID | None = None,
                       created: _dt.datetime | None = None, deliveries: int = 1) -> Task:
    """The ``Task`` every storage returns: the call from the envelope, the state from the storage.

    ``updated`` is in seconds (the envelope's creation time when None); ``returning`` is the
    msgpack of the result as stored.
    """
    created = created or ts_to_dt(env.created_at)
    task = Task(
        status=status,
        uuid=uuid or _uuid.UUID(env.uuid),
        priority=env.priority,
        task_name=env.task_name,
        args=tuple(env.args),
        kwargs=dict(env.kwargs),
        created_at=created,
        updated_at=ts_to_dt(updated) if updated else created,
        returning=msgspec.msgpack.decode(returning) if returning else None,
        traceback=traceback or None,
        retry=env.retry,
        retry_child_uuid=_uuid.UUID(retry_child) if retry_child else None,
        retry_parent_uuid=_uuid.UUID(env.retry_parent_uuid) if env.retry_parent_uuid else None,
        worker_id=worker_id or None,
        queue=queue or env.queue,
    )
    # set afterwards, not passed: msgspec's constructor slows down by 0.35 µs past 15 keyword arguments
    # (measured), and producers build one Task per call of a bulk enqueue
    if env.meta and META_RESTART_OF in env.meta:
        task.restart_of = _uuid.UUID(env.meta[META_RESTART_OF])
    if deliveries != 1:
        task.deliveries = deliveries
    return task


def record_from_envelope(env: Envelope, status: str = TaskStatus.NEW.value, uuid: _uuid.UUID | None = None,
                         created: _dt.datetime | None = None) -> Task:
    """The record a producer sees right after enqueue (``uuid``/``created`` may be passed pre-built)."""
    return task_from_envelope(env, status, uuid=uuid, created=created)


def unique_owner(env: Envelope) -> tuple[str, str] | None:
    """``(key, holder uuid)`` of the caller's unique key that ``env``'s end in error or cancel gives back.

    Why: a key held by a cancelled or failed task would make every re-send within ``unique_ttl`` return
    that dead record instead of running the call. Only a success keeps the key for its ttl. Keys the
    runtime claims for itself (``retry:<uuid>``, ``chain:<uuid>``: one child per parent) are never given
    back: :data:`META_UNIQUE_OWNER` is set on those envelopes, to the caller's key or None.
    """
    meta = env.meta
    if not meta:
        return None
    if META_UNIQUE_OWNER in meta:
        held = meta[META_UNIQUE_OWNER]
        if isinstance(held, (list, tuple)) and len(held) == 2 and all(isinstance(x, str) for x in held):
            return held[0], held[1]
        return None
    spec = meta.get(META_UNIQUE)
    if isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], (str, int)):
        return str(spec[0]), env.uuid
    return None


def releases_unique(status: str, retry_child: str) -> bool:
    """A task that ended so gives its unique key back: cancelled, or failed with no retry to follow."""
    return status == TaskStatus.CANCEL.value or (status == TaskStatus.ERROR.value and not retry_child)
