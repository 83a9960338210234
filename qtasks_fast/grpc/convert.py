"""Between the service layer's types and the ``qtasks_fast.v1`` messages: values (JSON or msgpack), records,
list rows, events and the list filter.

Why one module: every method answers records the same way (a value JSON cannot hold travels as its ``str``, as
QTasks' plugin does), and every bad input names its field the same way (``args: ...``), whatever the method.
"""

from __future__ import annotations

import uuid as _uuid
from typing import Any

import msgspec

from qtasks_fast.abc.query import TaskDetail, TaskEvent, TaskFilter, TaskSummary
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.querylib import STATUSES
from qtasks_fast.schemas import Task
from qtasks_fast.schemas.bigint import widen
from qtasks_fast.service import BadRequest, checked_filter

JSON, MSGPACK = pb.JSON, pb.MSGPACK
#: REST's bound on a time filter: the year 5000 (a millisecond of it fits every backend's integer)
MAX_TIME = 95_000_000_000
_json_encoder = msgspec.json.Encoder(enc_hook=str)
_msgpack_encoder = msgspec.msgpack.Encoder(enc_hook=str)


def value(data: Any, encoding: int) -> pb.Value:
    """``data`` as a :class:`Value` in ``encoding``; what neither format holds is sent as its ``str``, and an int
    wider than 64 bits in msgpack as extension type ``BIGINT_EXT`` (its decimal text; JSON holds it as a number)."""
    if encoding == MSGPACK:
        try:
            return pb.Value(msgpack=_msgpack_encoder.encode(data))
        except OverflowError:  # an int wider than 64 bits: the extension records use (qtasks_fast.schemas.bigint)
            return pb.Value(msgpack=_msgpack_encoder.encode(widen(data)))
    return pb.Value(json=_json_encoder.encode(data).decode())


def _no_ext(code: int, data: memoryview) -> Any:
    """msgpack extension types are refused: a task would receive an opaque object, stored as its ``repr``."""
    raise msgspec.DecodeError(f"msgpack extension type {code} is not accepted, only plain msgpack values")


def decoded(message: Any, field: str, kind: type) -> Any:
    """The value of ``message.<field>`` (a :class:`Value`), checked to be a ``kind``; unset: an empty one.
    :class:`BadRequest` naming the field for malformed JSON or msgpack, or another type."""
    holder = getattr(message, field)
    which = holder.WhichOneof("kind") if message.HasField(field) else None
    if which is None:  # unset, or a Value with neither json nor msgpack
        return kind()
    try:
        data = (msgspec.json.decode(holder.json) if which == "json"
                else msgspec.msgpack.decode(holder.msgpack, ext_hook=_no_ext))
    except msgspec.DecodeError as exc:
        raise BadRequest(field, f"{field}: not valid {which} ({exc}); send a {which} "
                                f"{'array' if kind is list else 'object'}") from None
    except RecursionError:
        raise BadRequest(field, f"{field}: nested too deeply (keep it under a few hundred levels)") from None
    if not isinstance(data, kind):
        want = "an array" if kind is list else "an object (map)"
        raise BadRequest(field, f"{field}: must be {want}, got {type(data).__name__}")
    return data


def _text(x: object) -> str:
    return "" if x is None else str(x)


def task(t: Task, encoding: int) -> pb.Task:
    """A record as a message."""
    out = pb.Task(uuid=str(t.uuid), task_name=t.task_name, status=str(t.status), priority=t.priority,
                  queue=t.queue, args=value(list(t.args), encoding), kwargs=value(t.kwargs, encoding),
                  traceback=t.traceback or "", created_at=t.created_at.timestamp(),
                  updated_at=t.updated_at.timestamp(), retry_parent_uuid=_text(t.retry_parent_uuid),
                  retry_child_uuid=_text(t.retry_child_uuid), restart_of=_text(t.restart_of),
                  worker_id=t.worker_id or "", deliveries=t.deliveries)
    if t.returning is not None:
        out.result.CopyFrom(value(t.returning, encoding))
    if t.retry is not None:
        out.retry = t.retry
    if t.extra:
        out.extra.CopyFrom(value(t.extra, encoding))
    return out


def reply(d: TaskDetail, encoding: int, logs: bool) -> pb.TaskReply:
    """GetTask's answer: the record with its timings, retry chain, restarts (and logs when asked)."""
    out = pb.TaskReply(task=task(d.task, encoding), retry_chain=d.retry_chain, restarts=d.restarts,
                       logs=d.logs if logs else [])
    if d.started_at is not None:
        out.started_at = d.started_at
    if d.finished_at is not None:
        out.finished_at = d.finished_at
    return out


def summary(s: TaskSummary) -> pb.TaskSummary:
    out = pb.TaskSummary(uuid=s.uuid, task_name=s.task_name, queue=s.queue, status=s.status, priority=s.priority,
                         created_at=s.created_at, worker_id=s.worker_id or "", error=s.error or "",
                         deliveries=s.deliveries, retry_parent_uuid=s.retry_parent_uuid or "",
                         retry_child_uuid=s.retry_child_uuid or "", restart_of=s.restart_of or "")
    if s.started_at is not None:
        out.started_at = s.started_at
    if s.finished_at is not None:
        out.finished_at = s.finished_at
    return out


def event(e: TaskEvent) -> pb.TaskEvent:
    return pb.TaskEvent(id=e.id, uuid=e.uuid, task_name=e.task_name, queue=e.queue, status=e.status, at=e.at,
                        worker_id=e.worker_id or "")


def status(name: str, field: str) -> str:
    if name not in STATUSES:
        raise BadRequest(field, f"{field}: {name!r} is no status; use one of {', '.join(STATUSES)}")
    return name


def list_filter(r: pb.ListTasksRequest) -> TaskFilter:
    """ListTasks' filter, checked as the REST API checks its query (status, time bounds)."""
    fields = {f: getattr(r, f) for f in TaskFilter.__struct_fields__ if r.HasField(f)}
    if "status" in fields:
        status(fields["status"], "status")
    for name, when in fields.items():
        if name.endswith(("_after", "_before")) and not 0 <= when <= MAX_TIME:
            raise BadRequest(name, f"{name}: must be a time in seconds since the epoch (0 to {MAX_TIME}), "
                                   f"got {when!r}")
    return checked_filter(fields)


def checked_uuid(text: str, field: str = "uuid") -> str:
    """A uuid's canonical text; :class:`BadRequest` naming ``field`` for anything else."""
    try:
        return str(_uuid.UUID(text))
    except ValueError:
        raise BadRequest(field, f"{field}: {text!r} is not a task uuid") from None
