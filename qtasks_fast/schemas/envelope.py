"""The wire type: one task call as it travels through the broker, and the meta keys the runtime reads.

Everything that crosses a process is a msgspec Struct encoded with msgpack (never pickle). Field names
on the wire are one or two letters because the envelope is encoded once per task on the hot path;
unknown fields are ignored on decode so that an older worker can read a newer producer's message.
"""

from __future__ import annotations

from typing import Any

import msgspec

from qtasks_fast.enums.task_status import TaskStatus


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



class Minted(list[Envelope]):
    """A batch of envelopes whose uuids the producer has just minted (``new_uuid``) and never sent before.

    Why: a backend that keeps a task's record apart from its message must make a uuid sent *again* start over
    (its old final record goes); checking that costs a lookup per task. A fresh uuid cannot have a record, so a
    backend seeing this type may skip the lookup (PostgreSQL: the enqueue's delete of old records, a fifth to
    a third of its statement on a large ``records`` table). Anything else (a plain list, a middleware that set
    its own uuid, a batch sent again) takes the checked path. Backends that do not care read it as a list.
    """

    __slots__ = ()


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
#: ``{field: value}``: extra fields of the task's record, set by the producer (QTasks' test plugin: ``is_testing``).
#: Every storage keeps the envelope with the record, so each ``Task`` built from it has them (``Task.extra``)
META_EXTRA = "ex"
#: set by the Redis broker when the producer that enqueued the envelope awaits its result: the settle
#: pushes the record to the task's reply list directly (no lookup in the P:wait set on either side)
META_REPLY = "rw"


def with_record_extra(env: Envelope, **fields: Any) -> Envelope:
    """``env`` whose record will carry ``fields`` besides its own (:data:`META_EXTRA`), merged with any it has."""
    meta = dict(env.meta)
    meta[META_EXTRA] = {**meta.get(META_EXTRA, {}), **fields}
    return msgspec.structs.replace(env, meta=meta)


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
