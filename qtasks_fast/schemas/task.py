"""The task record (QTasks ``qtasks.schemas.task.Task``) and how storages build it from an envelope."""

from __future__ import annotations

import dataclasses as _dataclasses
import datetime as _dt
import uuid as _uuid
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.enums.task_status import TaskStatus
from qtasks_fast.schemas.bigint import decode_result
from qtasks_fast.schemas.envelope import META_EXTRA, META_RESTART_OF, Envelope

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


class Task(msgspec.Struct):
    """A task record as returned by ``add_task`` and ``get`` (QTasks fields).

    The fields come in QTasks' dataclass order, so QTasks code that builds a record positionally
    (``Task(status, uuid, priority, task_name, args, kwargs, created_at, updated_at)``, a custom storage
    or a test) builds the same record here; our own fields follow QTasks' and all have defaults.

    ``retry`` is the number of retries *left* after this attempt, not how many were made: ``retry=3``
    on a first attempt that fails gives a child with ``retry=2``, and so on to 0. A failure that
    ``retry_on_exc`` does not name is final with retries still left in ``retry``. A task without retries
    has ``retry=None``, as on QTasks' record (``task.retry is None`` branches the same way there and here).
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
    #: less on each retry child, 0 on the last; None for a task without retries (QTasks' value);
    #: ``retry_parent_uuid`` links back to the attempt before
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
    #: the record's extra fields, None when it has none: what a plugin added for this task at enqueue
    #: (QTasks' ``SyncTestPlugin`` adds ``is_testing``). Each is an attribute as well, as on a QTasks record
    #: (``task.is_testing``); reading one the record lacks raises ``AttributeError``, as there
    extra: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        """An extra field (:attr:`extra`); called only for names that are not fields, so a field costs nothing."""
        extra = self.extra if name != "extra" else None  # "extra" unset (a half-built copy): no recursion
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property  # type: ignore[misc]
    def __dict__(self) -> dict[str, Any]:  # type: ignore[override]
        """The fields by name, as a dataclass instance has them: ``vars(task)`` and ``task.__dict__`` work as on
        QTasks' record (a new dict each time; setting an attribute is how a field is changed)."""
        return {name: getattr(self, name) for name in self.__struct_fields__}

    @property
    def finished(self) -> bool:
        return TaskStatus(self.status).finished

    def wait_result(self, timeout: float = 100.0, app: BaseQueueTasks | None = None) -> Task | None:
        """QTasks ``task.wait_result()``: block until this task is final and return its final record (the
        last retry's), or None when it is not final within ``timeout`` seconds.

        As in QTasks the record does not know its app: the main app (the one created last) is asked unless
        ``app`` is given, which a process with several apps must pass.
        """
        from qtasks_fast.results import SyncResult

        return SyncResult(uuid=self.uuid, app=app).result(timeout=timeout)

    async def wait_result_async(self, timeout: float = 100.0, app: BaseQueueTasks | None = None) -> Task | None:
        """QTasks ``task.wait_result_async()``: :meth:`wait_result` for async code (the loop stays free)."""
        from qtasks_fast.results import AsyncResult

        return await AsyncResult(uuid=self.uuid, app=app).result(timeout=timeout)


def _as_dataclass(cls: type[msgspec.Struct]) -> None:
    """Give ``cls`` the dataclass fields of its struct fields, so ``dataclasses.asdict``, ``astuple``, ``replace``,
    ``fields`` and ``is_dataclass`` work on it as on QTasks' ``@dataclass`` record (e.g.
    ``json.dumps(asdict(task), default=str)`` in a web view). Only class attributes are added: building and
    decoding a record stay msgspec's, at msgspec's speed."""
    specs: list[tuple[Any, ...]] = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            specs.append((f.name, f.type, _dataclasses.field(default=f.default)))
        elif f.default_factory is not msgspec.NODEFAULT:
            specs.append((f.name, f.type, _dataclasses.field(default_factory=f.default_factory)))
        else:
            specs.append((f.name, f.type))
    shadow = _dataclasses.make_dataclass(cls.__name__, specs)
    cls.__dataclass_fields__ = shadow.__dataclass_fields__  # type: ignore[attr-defined]
    cls.__dataclass_params__ = shadow.__dataclass_params__  # type: ignore[attr-defined]


_as_dataclass(Task)


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
        returning=decode_result(returning) if returning else None,
        traceback=traceback or None,
        retry=env.retry if env.retry or env.retry_parent_uuid else None,  # no retries at all: QTasks' None
        retry_child_uuid=_uuid.UUID(retry_child) if retry_child else None,
        retry_parent_uuid=_uuid.UUID(env.retry_parent_uuid) if env.retry_parent_uuid else None,
        worker_id=worker_id or None,
        queue=queue or env.queue,
    )
    # set afterwards, not passed: msgspec's constructor slows down by 0.35 µs past 15 keyword arguments
    # (measured), and producers build one Task per call of a bulk enqueue
    meta = env.meta
    if meta:
        if META_RESTART_OF in meta:
            task.restart_of = _uuid.UUID(meta[META_RESTART_OF])
        if META_EXTRA in meta and isinstance(meta[META_EXTRA], dict):
            task.extra = dict(meta[META_EXTRA])
    if deliveries != 1:
        task.deliveries = deliveries
    return task


def record_from_envelope(env: Envelope, status: str = TaskStatus.NEW.value, uuid: _uuid.UUID | None = None,
                         created: _dt.datetime | None = None) -> Task:
    """The record a producer sees right after enqueue (``uuid``/``created`` may be passed pre-built)."""
    return task_from_envelope(env, status, uuid=uuid, created=created)
