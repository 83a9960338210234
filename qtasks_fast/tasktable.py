"""The published task table: what a producer needs to send a task it has not imported.

Why it exists: a task's queue, priority, retries and time limit are declared where the task is
defined (``@app.task(queue="io", retry=3)``), in code a thin client (a web process that calls
``app.add_task("fetch", ...)`` by name) never imports. Without that code it would send the call to the
default queue with no retries and no limit. So every worker publishes its app's table to the broker
when it starts (:func:`publish`), and a producer that does not know a name looks it up there
(``Producer.refresh_tasks``, cached) before it builds the envelope.

Merging rule, for workers of several versions of one app sharing a broker (a rolling deploy), per
task name: the entry of the newest app version (``QueueTasks(version=...)``) wins, so an old worker
restarting mid-deploy never rolls a task's options back; at the same version the latest publisher
wins. Versions compare as dotted numbers (``1.10`` is newer than ``1.9``); an unversioned entry is
older than any version. A publish never removes a name: an app split across services (each worker
importing part of the tasks) keeps one table, and a task deleted from the code stays listed: its
calls reach the workers, which dead-letter them as unknown, and a waiting caller gets that reason at
once.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Broker
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("producer")
#: seconds between two reads of the table caused by misses: a typo in a hot loop costs one read per floor
LOOKUP_FLOOR = 1.0
#: seconds a read table is trusted for names found in it; then the next call of such a name reads it again,
#: so a producer picks up the options of a newly deployed version without a restart
MAX_AGE = 60.0


class TaskSpec(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One published task: the options a producer puts in the envelope, and who published them.

    Attribute names match :class:`~qtasks_fast.task.TaskFunc`'s, so the producer reads either alike.
    """

    queue: str
    priority: int = 0
    #: retries after the first attempt (``@app.task(retry=...)``)
    retry: int = 0
    max_time: float | None = None
    #: how the worker runs it: ``async``, ``thread``, ``inline``, ``process`` or ``custom`` (for tools)
    executor: str = "thread"
    #: the publishing app's ``version`` (None: unversioned) and qtasks_fast's
    version: str | None = None
    library: str = ""
    published_at: float = 0.0


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(TaskSpec).decode


def encode_spec(spec: TaskSpec) -> bytes:
    return _encode(spec)


def decode_spec(blob: bytes) -> TaskSpec | None:
    """A stored entry, or None when it is not one (written by another tool): treated as absent."""
    try:
        return _decode(blob)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def decode_table(items: Iterable[tuple[Any, bytes]]) -> dict[str, TaskSpec]:
    """``{name: spec}`` of stored ``(name, blob)`` pairs (names as str or bytes), undecodable ones left out."""
    out = {}
    for name, blob in items:
        spec = decode_spec(blob)
        if spec is not None:
            out[name.decode() if isinstance(name, bytes) else name] = spec
    return out


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a version: its numbers compare as numbers (``1.10`` > ``1.9``), other parts as text."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.findall(r"\d+|[^\d.\-_+]+", version))


def replaces(new: TaskSpec, old: TaskSpec) -> bool:
    """True when ``new`` takes the place of the stored ``old`` (see the merging rule in the module docstring)."""
    if old.version is None:
        return True
    if new.version is None:
        return False
    return version_key(new.version) >= version_key(old.version)


def merge(stored: Mapping[str, TaskSpec], published: Mapping[str, TaskSpec]) -> tuple[dict[str, TaskSpec], list[str]]:
    """What a publish writes: ``(entries to store, names kept because a newer version published them)``."""
    writes, kept = {}, []
    for name, spec in published.items():
        old = stored.get(name)
        if old is None or replaces(spec, old):
            writes[name] = spec
        else:
            kept.append(name)
    return writes, kept


def table_of(app: BaseQueueTasks) -> dict[str, TaskSpec]:
    """The app's registered tasks as published entries."""
    from qtasks_fast import __version__

    now = time.time()
    version = getattr(app, "version", None)
    out = {}
    for name, tf in app.tasks.items():
        kind = "async" if getattr(tf, "is_async", False) and tf.executor == "thread" else str(tf.executor)
        out[name] = TaskSpec(queue=tf.queue, priority=tf.priority or 0, retry=tf.retry or 0, max_time=tf.max_time,
                             executor=kind, version=version, library=__version__, published_at=now)
    return out


async def publish(app: BaseQueueTasks, broker: Broker, who: str) -> None:
    """Publish ``app``'s table at a worker's start. Best effort: a broker without tables, or a failure, is
    logged and the worker serves anyway (producers that import the tasks do not need the table)."""
    from qtasks_fast.abc.capabilities import NotSupported, TaskTable, require

    table = table_of(app)
    if not table:
        return
    try:
        kept = await require(broker, TaskTable).publish_tasks(table)
    except NotSupported:
        log.debug("broker %s keeps no task table: clients must import the tasks they send by name",
                  type(broker).__name__)
        return
    except Exception as exc:  # noqa: BLE001 - the worker serves anyway; say what clients will miss
        log.warning("worker %s could not publish the task table (%s): clients that send tasks by name without "
                    "importing them use default options until a worker publishes it", who, exc)
        return
    if kept:
        log.info("worker %s (app version %s): a newer version published %s; producers keep its options",
                 who, getattr(app, "version", None), ", ".join(sorted(kept)))


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
