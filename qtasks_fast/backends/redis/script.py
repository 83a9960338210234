"""The Redis protocol of qtasks_fast, in one place: ``redis.lua``'s ops as typed methods, the key names, and the
one call path (FCALL of the function library, or EVALSHA on a server without Redis Functions; the library or
script loaded again when the server lost it; redis-py errors turned into ``BrokerUnavailable``/``BrokerFull``).

Why one owner: the script is called with positional arguments (``FCALL qtf_<sha8> 1 <P> <op> <rec> <args...>``,
see the header of ``redis.lua``); when that knowledge was spread over the broker, its control half and the
storage, a changed op had a dozen call sites to keep in step and the sync and async paths drifted apart (the
async reads did not turn a lost connection into ``BrokerUnavailable``). Here each op is one method that names
its arguments and parses its reply, and returns a :class:`Call`: ``await call`` on the async client,
``call.sync()`` on the blocking one. Both run :meth:`Call._reply`, so error mapping and the script reload
cannot differ between them. Code that reads or writes a plain key goes through the key functions below.

Multi-step operations (a lookup over several queues, a wait in slices) are written once as generators of
calls and driven by ``run`` or ``run_sync`` (:mod:`qtasks_fast.steps`): a :class:`Call` is such a step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import redis
from redis.exceptions import NoPermissionError, NoScriptError

from qtasks_fast.backends.redis.errors import REFUSED, no_such_db, refused, transient, unreachable

if TYPE_CHECKING:
    from qtasks_fast.backends.redis.connection import RedisConnection

__all__ = ["FUNCTION", "LIBRARY", "LUA", "SHA", "Call", "Script", "outage", "queue_prefix", "refused", "unreachable"]

#: ``redis.lua`` as written: every op, then ``run``; its last line is added here, for one of two load modes
SOURCE = (Path(__file__).parent / "redis.lua").read_text(encoding="utf-8")
#: the EVALSHA script (a server without Redis Functions: Redis 6, or an ACL that allows EVALSHA only)
LUA = SOURCE + "return run(KEYS, ARGV)\n"
SHA = hashlib.sha1(LUA.encode()).hexdigest()
#: The function library's and its function's name carry the script's hash: two versions of qtasks_fast sharing
#: a Redis (a rolling deploy) each load and call their own, and FUNCTION LOAD REPLACE only ever replaces a
#: library of the same code. ``FUNCTION_RO`` (flag ``no-writes``) serves the ops in ``READ_ONLY``.
FUNCTION = f"qtf_{SHA[:8]}"
FUNCTION_RO = f"{FUNCTION}_ro"
READ_ONLY = frozenset({"get", "stats", "depth"})
LIBRARY = (f"#!lua name={FUNCTION}\n{SOURCE}redis.register_function('{FUNCTION}', run)\n"
           f"redis.register_function{{function_name='{FUNCTION_RO}', callback=run, flags={{'no-writes'}}}}\n")
_LOAD_SCRIPT = ("SCRIPT", "LOAD", LUA)
_LOAD_LIBRARY = ("FUNCTION", "LOAD", "REPLACE", LIBRARY)
T = TypeVar("T")
#: how a call reaches Redis: ``pool`` = redis-py's client (its pool and retry wrapper; rare operations),
#: ``direct`` = a direct connection, sent again once when it was stale (the producer's round trips),
#: ``hot`` = a direct connection, no resend (the worker's fetch and settle: their callers retry), ``pipe`` =
#: a list of commands in one redis-py pipeline, ``hotpipe`` = a list of commands in one write on a direct
#: connection (async only; see ``RedisConnection.execute`` and ``direct.py``)
Via = Literal["pool", "direct", "hot", "pipe", "hotpipe"]


def pack_resp(args: tuple[Any, ...]) -> bytes:
    """One command as RESP bytes (str as UTF-8, numbers as their decimal text): hiredis' ``pack_command`` in
    Python, for a redis-py installed without its hiredis extra."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += (b"$%d\r\n" % len(b), b, b"\r\n")
    return b"".join(out)


_pack_command: Callable[[tuple[Any, ...]], bytes] = pack_resp
with contextlib.suppress(ImportError):
    from hiredis import pack_command as _hiredis_pack

    _pack_command = _hiredis_pack


# ------------------------------------------------------------------------------------------------ key names
def queue_prefix(app: str, queue: str) -> str:
    """Key prefix ``P`` of one queue; the ``{app:queue}`` hash tag keeps all its keys in one cluster slot."""
    return f"qtf:{{{app}:{queue}}}"


def workers_key(app: str) -> str:
    """The app's worker registry (see redis.lua, key ``qtf:{<app>}:workers``)."""
    return f"qtf:{{{app}}}:workers"


def tasks_key(app: str) -> str:
    """The app's published task table (see qtasks_fast.tasktable): one hash per app, outside the queues' slots."""
    return f"qtf:{{{app}}}:tasks"


def queues_key(app: str) -> str:
    """The queues producers routed calls to that no task names (``Broker.note_queues``), for ``flush_all``."""
    return f"qtf:{{{app}}}:queues"


def claim_key(app: str, key: str) -> str:
    """A leader claim (periodic ticks): ``SET NX PX``."""
    return f"qtf:{{{app}}}:claim:{key}"


def cancel_channel(app: str) -> str:
    """Pub/sub channel of cancel requests for running tasks (msgpack ``[uuid, reason]``)."""
    return f"qtf:{app}:cancel"


# ------------------------------------------------------------------------------ errors at the boundary
def outage(url: str, exc: redis.RedisError) -> BaseException:
    """How a failed call leaves :class:`Call`: an outage (``errors.refused``: ``BrokerUnavailable`` or
    ``BrokerFull``) or a refused client (``errors.unreachable``: ``BrokerRefused``) becomes ours at once; any
    other error reply stays redis-py's for the caller that handles it (``NOGROUP``), and the class boundary
    (``errors.at_boundary``) turns what still leaves a contract method into a ``BrokerError``."""
    if transient(exc):
        return refused(url, exc)
    if isinstance(exc, REFUSED) or no_such_db(exc):
        return unreachable(url, exc)
    return exc


# ------------------------------------------------------------------------------------------ one call path
def _raw(reply: Any) -> Any:
    return reply


def _no_functions(exc: redis.ResponseError) -> bool:
    """The server cannot run FCALL or FUNCTION for us: no such command (Redis 6), or an ACL that does not
    allow them (a user set up for EVALSHA before this version): the call goes on as EVALSHA."""
    text = str(exc).lower()
    return ("unknown command" in text or isinstance(exc, NoPermissionError)) and ("fcall" in text or "function" in text)


class Call(Generic[T]):
    """One request (an FCALL or EVALSHA of redis.lua, a plain command, or a pipeline of them) and its reply parser.

    ``cmd`` may be one command already packed as RESP ``bytes`` (op ``add``): sent as is, ``direct`` only.
    ``script``: for a call of redis.lua, the command unpacked (what :meth:`_recover` rebuilds as EVALSHA)."""

    __slots__ = ("conn", "cmd", "via", "parse", "script")

    def __init__(self, conn: RedisConnection, cmd: Sequence[Any], via: Via,
                 parse: Callable[[Any], T] = _raw, script: tuple[Any, ...] = ()) -> None:
        self.conn, self.cmd, self.via, self.parse, self.script = conn, cmd, via, parse, script

    def __await__(self) -> Generator[Any, None, T]:
        return self._reply().__await__()

    def _recover(self, exc: redis.ResponseError) -> tuple[Any, ...] | None:
        """What to send before this call is sent again, when ``exc`` says the server lacks our code: the library
        (``Function not found``: a restart without persistence, FUNCTION FLUSH, or the first call of this
        version), the script (NOSCRIPT), or, when the server has no Redis Functions for us (:func:`_no_functions`),
        the script after this call and every later one of the connection became EVALSHA. ``None``: another error."""
        if not self.script:
            return None
        if isinstance(exc, NoScriptError):
            return _LOAD_SCRIPT
        if self.script[0] != "FCALL":
            return None
        if str(exc).startswith("Function not found"):
            return _LOAD_LIBRARY
        if not _no_functions(exc):
            return None
        self.conn.functions = False
        self.script = ("EVALSHA", SHA, *self.script[2:])
        self.cmd = _pack_command(self.script) if isinstance(self.cmd, bytes) else self.script
        return _LOAD_SCRIPT

    async def _reply(self) -> T:
        conn = self.conn
        try:
            try:
                reply = await conn.execute(self.cmd, self.via)
            except redis.ResponseError as exc:  # the server lost our code (restart, FLUSH), or never had it
                load = self._recover(exc)
                if load is None:
                    raise
                try:
                    await conn.execute(load, "pool")
                except redis.ResponseError as again:  # FUNCTION LOAD refused: EVALSHA instead
                    if load is not _LOAD_LIBRARY or (load := self._recover(again)) is None:
                        raise
                    await conn.execute(load, "pool")
                reply = await conn.execute(self.cmd, self.via)
        except redis.RedisError as exc:
            err = outage(conn.url, exc)
            if err is exc:
                raise
            raise err from exc
        return self.parse(reply)

    def sync(self) -> T:
        """The same call on the blocking client (:meth:`_reply`'s twin by transport only)."""
        conn = self.conn
        try:
            try:
                reply = conn.execute_sync(self.cmd, self.via)
            except redis.ResponseError as exc:
                load = self._recover(exc)
                if load is None:
                    raise
                try:
                    conn.execute_sync(load, "pool")
                except redis.ResponseError as again:
                    if load is not _LOAD_LIBRARY or (load := self._recover(again)) is None:
                        raise
                    conn.execute_sync(load, "pool")
                reply = conn.execute_sync(self.cmd, self.via)
        except redis.RedisError as exc:
            err = outage(conn.url, exc)
            if err is exc:
                raise
            raise err from exc
        return self.parse(reply)


def _fields(res: Any) -> dict[bytes, bytes]:
    """The flat ``[field, value, ...]`` of ops get/watch as a dict (``{}`` for an unknown task)."""
    return dict(zip(res[::2], res[1::2])) if res else {}


def _pairs(res: Any) -> dict[str, str]:
    """``{skipped uuid: holder uuid}`` of ops enqueue/unique."""
    return {res[j].decode(): res[j + 1].decode() for j in range(0, len(res or ()), 2)}


def _stats(res: Any) -> tuple[int, int, int, int]:
    waiting, in_flight, delayed, dead = res
    return int(waiting), int(in_flight), int(delayed), int(dead)


def _fetched(res: Any) -> tuple[list[Any], bool, int, list[Any]]:
    return res[0], bool(res[1]), int(res[2]), list(res[3]) if len(res) > 3 and res[3] else []


class Script:
    """``redis.lua`` for one app on one connection: one method per op, each documented with its keys.

    ``queue`` selects the key prefix ``P`` (:func:`queue_prefix`); ``rec`` says whether task records live in
    this Redis (``RedisStorage`` on the same connection), see the script's header.
    """

    __slots__ = ("conn", "app")

    def __init__(self, conn: RedisConnection, app: str) -> None:
        self.conn, self.app = conn, app

    def _call(self, queue: str, op: str, rec: bool, args: Sequence[Any], via: Via = "pool",
              parse: Callable[[Any], T] = _raw, packed: bool = False) -> Call[T]:
        """The only place that writes ``FCALL``/``EVALSHA``: ``KEYS[1] = P``, ``ARGV = op, rec, args...``; FCALL of
        the library unless the connection found the server without Redis Functions (``Call._recover``).
        ``packed``: the command goes out as RESP bytes built here in one call (``direct``/``hot`` only, see
        ``Call``)."""
        if self.conn.functions:
            cmd: tuple[Any, ...] = ("FCALL", FUNCTION_RO if op in READ_ONLY else FUNCTION, 1,
                                    queue_prefix(self.app, queue), op, "1" if rec else "0", *args)
        else:
            cmd = ("EVALSHA", SHA, 1, queue_prefix(self.app, queue), op, "1" if rec else "0", *args)
        return Call(self.conn, _pack_command(cmd) if packed else cmd, via, parse, cmd)

    def command(self, *cmd: Any, via: Via = "pool", parse: Callable[[Any], T] = _raw, packed: bool = False) -> Call[T]:
        """A plain command (``BLPOP``, ``LRANGE`` ...) on the same call path (error mapping included); ``packed``:
        see :meth:`_call` (a ``Call`` can be awaited again: the worker keeps its blocking read's)."""
        return Call(self.conn, _pack_command(cmd) if packed else cmd, via, parse)

    def pipeline(self, cmds: Sequence[Sequence[Any]]) -> Call[list[Any]]:
        """Plain commands in one pipeline (no transaction)."""
        return Call(self.conn, cmds, "pipe")

    # ------------------------------------------------------------------------------------- keys
    def prefix(self, queue: str) -> str:
        return queue_prefix(self.app, queue)

    def stream_key(self, queue: str, prio: int) -> str:
        """``P:s:<prio>``: the stream of one priority level (``-1``: the queue's wake stream ``P:wake``)."""
        return f"{queue_prefix(self.app, queue)}:s:{prio}" if prio >= 0 else f"{queue_prefix(self.app, queue)}:wake"

    def record_key(self, queue: str, uuid: str) -> str:
        """``P:t:<uuid>``: a finished task's record."""
        return f"{queue_prefix(self.app, queue)}:t:{uuid}"

    def reply_key(self, queue: str, uuid: str) -> str:
        """``P:r:<uuid>``: the reply list a producer blocks on."""
        return f"{queue_prefix(self.app, queue)}:r:{uuid}"

    def logs_key(self, queue: str, uuid: str) -> str:
        """``P:lg:<uuid>``: the log lines captured while the task ran."""
        return f"{queue_prefix(self.app, queue)}:lg:{uuid}"

    def events_key(self, queue: str) -> str:
        """``P:ev``: the query side's stream of status changes (see redis.lua)."""
        return f"{queue_prefix(self.app, queue)}:ev"

    def throughput_key(self, queue: str) -> str:
        """``P:tp``: tasks finished per minute and status."""
        return f"{queue_prefix(self.app, queue)}:tp"

    def restarts_key(self, queue: str, uuid: str) -> str:
        """``P:rs:<uuid>``: the uuids of tasks restarting ``uuid`` (app.restart)."""
        return f"{queue_prefix(self.app, queue)}:rs:{uuid}"

    def dlq_key(self, queue: str) -> str:
        """``P:dlq``: the dead-letter stream."""
        return f"{queue_prefix(self.app, queue)}:dlq"

    def slots_key(self, queue: str, key: str) -> str:
        """``P:sem:<key>``: the slots of a fleet-wide concurrency limit."""
        return f"{queue_prefix(self.app, queue)}:sem:{key}"

    # -------------------------------------------------------------------------------- producer
    def add(self, queue: str, prio: int, uuid: str, blob: bytes, name: str, created_ms: int,
            event: bytes) -> Call[dict[str, str]]:
        """Op ``add``: :meth:`enqueue` of one plain envelope (no delay, no unique key) with our records and the
        query side: ``prio`` already clamped to the served levels, ``event`` the msgpack of its ``new`` event
        ``[uuid, "new", name, ""]``. The command goes out packed (see :meth:`_call`): redis-py's per-argument
        encoding cost ~15 µs of the producer's time before the send, part of every ``add_task``'s dispatch
        latency."""
        return self._call(queue, "add", True, (prio, uuid, blob, name, created_ms, event), "direct", _pairs,
                          packed=True)

    def enqueue(self, queue: str, rec: bool, now: str, nprios: int, packed: bytes, special: bytes = b"",
                claimed: str = "1", unique_ttl: int = 0, owners: bytes | str = "",
                index: bytes | str = "") -> Call[dict[str, str]]:
        """Op ``enqueue`` (XADD to ``P:s:<prio>``; delayed ones to ``P:d``/``P:dm``, unique keys ``P:u:<key>``,
        ``P:uo``; with ``rec`` also ``P:q`` and the query side: ``P:x:n:<name>``, ``P:x:names``, ``P:ev``):
        ``{skipped uuid: holder uuid}`` of unique envelopes whose key was held. ``packed``/``special``/``index``:
        see ``backends.redis.pack.enqueue_args`` (``index`` ``"0"``: no query side, ``index_results=False``).
        A direct connection: its round trip sets the latency of ``add_task(..., timeout=)``."""
        args: tuple[Any, ...] = (now, nprios, packed, special, claimed, unique_ttl, owners, index) \
            if special or index else (now, nprios, packed)
        return self._call(queue, "enqueue", rec, args, "direct", _pairs)

    def unique(self, queue: str, unique_ttl: int, claims: Sequence[Any]) -> Call[dict[str, str]]:
        """Op ``unique``: claim ``P:u:<key>`` for ``claims`` = ``[uuid, key, ttl ms]*`` (for a foreign storage,
        before its records are created); same reply as :meth:`enqueue`."""
        return self._call(queue, "unique", False, (unique_ttl, *claims), parse=_pairs)

    # ---------------------------------------------------------------------------------- worker
    def fetch(self, queue: str, rec: bool, consumer: str, worker: str, count: int, now: str, mode: int,
              lease_ms: int, max_deliveries: int, nprios: int, ttl_ms: int,
              held: Sequence[str] = ()) -> Call[tuple[list[Any], bool, int, list[Any]]]:
        """Op ``fetch`` (promotes due ``P:d`` entries, XREADGROUP/XAUTOCLAIM of ``P:s:*``; parked last attempts
        under ``<consumer>:last``): ``(flat [prio, id, body, deliveries]*, again, due ms, ended)``; ``ended`` are
        the messages it dead-lettered for too many deliveries, whose ``error`` records a foreign storage needs."""
        return self._call(queue, "fetch", rec, (self.app, consumer, worker, count, now, mode, lease_ms,
                                                max_deliveries, nprios, ttl_ms, *held), "hot", _fetched)

    def started(self, queue: str, count: int, events: bytes) -> Call[Any]:
        """Op ``started``: the ``P:ev`` entry of ``count`` ``process`` events (packed by the broker) of tasks the
        broker's plain XREADGROUP fetches handed out. Their start times are the PEL's delivery times (see
        redis.lua, ``P:q``)."""
        return self._call(queue, "started", True, (count, events), "hot")

    def settle(self, queue: str, rec: bool, now: str, ttl_ms: int, packed: bytes, index: bytes, replies: bytes,
               released: bytes = b"") -> Call[Any]:
        """Op ``settle`` (SET ``P:t:<uuid>``, XACK, ``P:q``, ``P:count``, the query side ``P:x:f:*``/``P:ev``/``P:tp``,
        ``P:r:*`` of awaited tasks, ``P:uo``): see :meth:`early_replies` for the replies sent before it, and
        ``index.PendingStarts.carry`` for the ``process`` events it carries."""
        extra: tuple[Any, ...] = (released,) if released else ()
        return self._call(queue, "settle", rec, (self.app, now, ttl_ms, packed, index, replies, *extra), "hot")

    def early_replies(self, queue: str, ttl_ms: int, early: Sequence[Any]) -> Call[Any]:
        """``SET P:t:<uuid>``, ``RPUSH``/``PEXPIRE P:r:<uuid>`` of ``early`` = ``[uuid, record]*`` (tasks a producer
        blocks on), as plain commands sent before :meth:`settle`: the caller's wait ends without waiting for the
        settle script (see redis.lua, op settle)."""
        cmds: list[tuple[Any, ...]] = []
        for j in range(0, len(early), 2):
            reply = self.reply_key(queue, early[j])
            cmds += [("SET", self.record_key(queue, early[j]), early[j + 1], "PX", ttl_ms),
                     ("RPUSH", reply, early[j + 1]), ("PEXPIRE", reply, ttl_ms)]
        return Call(self.conn, cmds, "hotpipe")

    def renew(self, queue: str, consumer: str, entries: Sequence[Any]) -> Call[list[Any]]:
        """Op ``renew`` (XCLAIM of ``P:s:<prio>`` entries ``[prio, id]*`` this consumer still owns): the
        ``[prio, id]*`` still held."""
        return self._call(queue, "renew", False, (self.app, consumer, *entries))

    def release(self, queue: str, rec: bool, now: str, consumer: str, entries: Sequence[Any]) -> Call[Any]:
        """Op ``release`` (drain: entries ``[prio, id]*`` re-added at the tail of ``P:s:<prio>``, old ones acked)."""
        return self._call(queue, "release", rec, (self.app, now, consumer, *entries))

    def dead(self, queue: str, rec: bool, now: str, ttl_ms: int, entries: Sequence[Any]) -> Call[Any]:
        """Op ``dead`` (entries ``[prio, id, reason, deliveries]*`` to ``P:dlq``, acked)."""
        return self._call(queue, "dead", rec, (self.app, now, ttl_ms, *entries))

    def trim(self, queue: str, now: int, ttl_ms: int) -> Call[Any]:
        """Op ``trim``: ``P:x`` entries of records gone, ``P:tp`` minutes older than ``ttl_ms``, ``P:ev`` events
        beyond the last 10,000 go."""
        return self._call(queue, "trim", True, (now, ttl_ms))

    # ----------------------------------------------------------------------------------- reads
    def get(self, queue: str, uuid: str) -> Call[dict[bytes, bytes]]:
        """Op ``get``: ``{b"R": record}`` when final (``P:t``), else fields ``e/s/wk/u`` of a queued or running
        task (``P:q``, the group's pending list), ``{}`` when unknown."""
        return self._call(queue, "get", True, (self.app, uuid), parse=_fields)

    def watch(self, queue: str, uuid: str) -> Call[dict[bytes, bytes]]:
        """Op ``watch``: :meth:`get`, and an unfinished task joins ``P:wait`` (settle pushes its ``P:r:<uuid>``)."""
        return self._call(queue, "watch", True, (self.app, uuid), parse=_fields)

    def stats(self, queue: str, nprios: int, now: int) -> Call[tuple[int, int, int, int]]:
        """Op ``stats``: ``(waiting, in_flight, delayed, dead)`` of the queue, read-only."""
        return self._call(queue, "stats", False, (self.app, nprios, now), parse=_stats)

    def page(self, queue: str, nprios: int, status: str, name: str, cmin: str, top: str, tie: str, cmax: str,
             limit: int, budget: int, worker: str, err: str, fmin: str, fmax: str) -> Call[list[Any]]:
        """Op ``list``: the query side's filtered page of one queue, newest first (see redis.lua for the
        arguments): ``[rows (uuid, score, kind, data, consumer, since)*, more]``."""
        return self._call(queue, "list", True, (self.app, nprios, status, name, cmin, top, tie, cmax, limit, budget,
                                                worker, err, fmin, fmax))

    def counts(self, queue: str, nprios: int, name: str, cmin: str, cmax: str, now: int,
              ttl_ms: int) -> Call[list[int]]:
        """Op ``count``: ``[new, process, success, error, cancel]`` of one queue for a task name (``""``: all)
        and ZRANGE BYSCORE created bounds."""
        return self._call(queue, "count", True, (self.app, nprios, name, cmin, cmax, now, ttl_ms),
                          parse=lambda res: [int(n) for n in res])

    def depth(self, queue: str, nprios: int, now: int) -> Call[list[Any]]:
        """Op ``depth``: ``[waiting [prio, n]*, in flight [consumer, n]*, delayed, dead]`` of the queue."""
        return self._call(queue, "depth", False, (self.app, nprios, now))

    # --------------------------------------------------------------------------------- control
    def cancel(self, queue: str, rec: bool, uuid: str, reason: str, now: str, ttl_ms: int, nprios: int,
               index: bool) -> Call[list[Any]]:
        """Op ``cancel``: ``[state, blob*]`` with state ``finished``, ``queued`` (removed; blob for a foreign
        storage), ``running`` (PUBLISHed on :func:`cancel_channel`, remembered in ``P:cx``) or ``unknown``."""
        return self._call(queue, "cancel", rec, (self.app, uuid, reason, now, ttl_ms, nprios,
                                                 cancel_channel(self.app), "1" if index else "0"))

    def requeue(self, queue: str, rec: bool, limit: int, ids: Sequence[str] = ()) -> Call[int]:
        """Op ``requeue``: dead letters (``P:dlq``; ``ids``, else the oldest ``limit``) back to their stream."""
        return self._call(queue, "requeue", rec, (limit, *ids), parse=int)

    def purge_dead(self, queue: str, ids: Sequence[str] = ()) -> Call[int]:
        """Op ``purgedead``: delete dead letters (``ids``, all without)."""
        return self._call(queue, "purgedead", False, ids, parse=int)

    def purge(self, queue: str, rec: bool, now: str, ttl_ms: int, limit: int, index: bool, prio: str,
              cursor: str) -> Call[list[Any]]:
        """Op ``purge``: up to ``limit`` unrun entries of ``P:s:<prio>`` after ``cursor`` (``prio`` ``d``: of
        ``P:d``) go; ``[n, scanned, last id, blob*]``."""
        return self._call(queue, "purge", rec, (self.app, now, ttl_ms, limit, "1" if index else "0", prio, cursor))

    def acquire(self, queue: str, key: str, limit: int, token: str, ttl_ms: int) -> Call[bool]:
        """Op ``acquire``: take or renew a slot of ``P:sem:<key>``."""
        return self._call(queue, "acquire", False, (key, limit, token, ttl_ms), parse=bool)

    def unslot(self, queue: str, key: str, token: str) -> Call[Any]:
        """Op ``unslot``: give a slot of ``P:sem:<key>`` back."""
        return self._call(queue, "unslot", False, (key, token))
