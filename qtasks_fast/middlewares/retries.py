"""Retries: a failed call with retries left is enqueued again as a child task, after a backoff.

``@app.task(retry=5, retry_on_exc=[TimeoutError], retry_backoff=2, retry_backoff_max=60, retry_jitter=True)``

- ``retry``: retries after the first run; the producer puts it in the envelope, each child has one less.
- ``retry_on_exc``: retry only these exceptions (subclasses match); empty = any exception. Wrong
  arguments (``TaskArgumentsError``) are never retried: a retry would fail the same way.
- ``retry_backoff``: base delay in seconds (``True`` = 1 s); the n-th retry waits ``base * 2**(n-1)``,
  capped at ``retry_backoff_max`` (300 s); ``retry_jitter`` (default on) draws the delay uniformly
  from ``[0, that]`` ("full jitter"), so a burst of failures does not come back as a burst.
  Without ``retry_backoff`` a retry is due at once.

The child is a new task linked both ways: its ``retry_parent_uuid`` is the failed one and
the failed record's ``retry_child_uuid`` names it; ``app.wait`` follows the links. It carries
``eta`` (when it may start, held durably by the broker) and ``meta[META_ATTEMPT]`` (1 for the
first retry). It is enqueued in the same settle that stores the failure, so a crash in between
reruns the failed call rather than losing the retry.

A parent has one retry child, however often its failure is handled: the child's uuid derives
from the parent's (``uuid5(RETRY_NAMESPACE, parent)``) and its enqueue claims the unique key
``retry:<parent uuid>``, as a chain step does. A settle sent again after a partial failure (the
child enqueued, the ack refused by a full Redis) or a parent rerun after a crash therefore finds
the child already queued instead of queueing a second one.

This runs only on the error path of a task with retries left: it costs nothing otherwise.
"""

from __future__ import annotations

import random
import reprlib
import time
import uuid as _uuid
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.exceptions import TaskArgumentsError
from qtasks_fast.schemas import (
    META_ATTEMPT,
    META_REPLY,
    META_RESTART_OF,
    META_UNIQUE,
    META_UNIQUE_OWNER,
    Envelope,
    unique_owner,
)

if TYPE_CHECKING:
    from qtasks_fast.task import TaskFunc

#: namespace of retry child uuids: ``uuid5(RETRY_NAMESPACE, parent uuid)``
RETRY_NAMESPACE = _uuid.uuid5(_uuid.NAMESPACE_URL, "qtasks-fast:retry")
#: seconds the ``retry:<parent uuid>`` key blocks a second child; reruns of a parent happen within a few
#: leases, and a retry backoff is capped far below a day
RETRY_UNIQUE_TTL = 86400.0

#: meta keys a retry child does not inherit: its enqueue must not be skipped as a duplicate of its parent,
#: and it restarts nothing
NOT_INHERITED = (META_UNIQUE, META_RESTART_OF, META_REPLY)


def retry_delay(task: TaskFunc | None, attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based) of ``task`` may start."""
    base = task.retry_backoff if task is not None else 0.0
    if base <= 0:
        return 0.0
    # the exponent is capped: an attempt number from a foreign envelope must not overflow the float
    delay = min(task.retry_backoff_max, base * 2.0 ** min(max(attempt - 1, 0), 64))  # type: ignore[union-attr]
    return random.uniform(0.0, delay) if task.retry_jitter else delay  # type: ignore[union-attr]


def matches(exc: BaseException, classes: tuple[type[BaseException], ...]) -> bool:
    """``isinstance(exc, classes)``; for an error raised in a child process (see procexec), by class names."""
    if isinstance(exc, classes):
        return True
    names: Any = getattr(exc, "mro_names", None)
    return bool(names) and any(f"{c.__module__}.{c.__qualname__}" in names for c in classes)


def attempt_of(env: Envelope) -> int:
    """The retry attempt number of ``env`` (``meta[META_ATTEMPT]``, 0 when absent), checked: the envelope
    may come from a foreign producer."""
    value = env.meta.get(META_ATTEMPT, 0)
    if type(value) is not int or value < 0:  # noqa: E721 - bool is not an attempt number
        raise ValueError(f"envelope meta {META_ATTEMPT!r} (retry attempt number) must be a non-negative integer, "
                         f"got {reprlib.repr(value)}; fix the producer that built this envelope")
    return value


def retry_child(env: Envelope, task: TaskFunc | None, exc: BaseException) -> Envelope | None:
    """The envelope of the retry of ``env`` after it raised ``exc``, or None when it is not retried."""
    if env.retry <= 0 or matches(exc, (TaskArgumentsError,)):
        return None
    if task is not None and task.retry_on_exc and not matches(exc, task.retry_on_exc):
        return None
    attempt = attempt_of(env) + 1
    meta = {k: v for k, v in env.meta.items() if k not in NOT_INHERITED}
    meta[META_ATTEMPT] = attempt
    meta[META_UNIQUE] = ["retry:" + env.uuid, RETRY_UNIQUE_TTL]
    owner = unique_owner(env)  # the caller's key stays held through the retries; the last failure gives it back
    meta[META_UNIQUE_OWNER] = list(owner) if owner else None
    now = time.time()
    delay = retry_delay(task, attempt)
    return msgspec.structs.replace(env, uuid=str(_uuid.uuid5(RETRY_NAMESPACE, env.uuid)), retry=env.retry - 1,
                                   retry_parent_uuid=env.uuid,
                                   created_at=now, meta=meta, eta=now + delay if delay > 0 else 0.0)
