# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=True
"""The Redis backend's hot packing: the msgpack arguments of ``redis.lua``'s ``enqueue`` and ``settle`` ops.

Moved out of the backend-neutral core (``qtasks_fast/_core.pyx``) because only the Redis script reads these
layouts. Like the core it is written in the Python subset of Cython: ``setup.py`` compiles it to
``qtasks_fast.backends.redis._pack``, and ``qtasks_fast.backends.redis.pack`` loads the same file as plain
Python when asked (``QTASKS_PURE_PYTHON=1``) or when no compiled module exists. It runs for every task on both
the producer and the worker, so it is compiled as the core is.
"""

from itertools import repeat

import msgspec

try:
    import cython  # at compile time: Cython's types; at run time (pure Python): its shadow module
except ImportError:  # pure Python without Cython installed: the same no-op names
    from qtasks_fast import _cyshim as cython

_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_encode_into = _encoder.encode_into


_Raw = msgspec.Raw


def _str(b: bytes):
    """``b`` as a msgpack *str*: Redis' Lua cmsgpack cannot read the *bin* type msgspec uses for bytes."""
    return _Raw(_str_head(len(b)) + b)


def _str_head(n):
    """The header of a msgpack *str* of ``n`` bytes, as msgspec writes it."""
    if n < 32:
        return bytes((0xA0 | n,))
    if n < 256:
        return bytes((0xD9, n))
    if n < 65536:
        return b"\xda" + n.to_bytes(2, "big")
    return b"\xdb" + n.to_bytes(4, "big")


@cython.cfunc
def _created_ms(created_at):
    """An envelope's ``created_at`` in ms: the score of the query side's P:x zsets (the precision every backend
    orders by)."""
    return round(created_at * 1000)


def _index_arg(zsets: dict, events: list):
    """The query side's argument of a Lua enqueue/settle, built here so that Redis only stores it:
    ``[{key: [created ms, uuid, ...]}, events, count]`` (``events`` = the msgpack of
    ``[uuid, status, name, worker]*`` as a str, the P:ev entry as is, of ``count`` events)."""
    return _encode([zsets, _str(_encode(events)), len(events) // 4])


#: no queue yet (the packing loops' last queue before the first)
_UNSET = object()

#: room kept at the front of a :class:`_Buf` for the array header written when it is finished
_HEAD = 5


@cython.cclass
class _Buf:
    """The packed ``[...]*`` argument of one queue, written at a position into a buffer of its own.

    Why not ``bytearray +=``: each append went through the number protocol and a buffer export, and the
    bytearray grew by 1/8 at a time, so a settle of 100 tasks reallocated (and copied) its buffer ~120 times
    (callgrind: ~1,400 of ~9,200 instructions per task). This one doubles when full, and compiled, each piece is
    a C copy into its memory. The same bytes as before: msgspec's encoding of the list (tests pin them).
    """

    buf = cython.declare(bytearray)
    #: scratch for the msgpack of one record (msgspec encodes into it; no bytes object per record)
    scratch = cython.declare(bytearray)
    pos = cython.declare(cython.Py_ssize_t)
    #: elements written (the array header counts them)
    count = cython.declare(cython.Py_ssize_t)

    def __init__(self, size):
        # pure Python appends to the buffer instead (bytearray += is C there; positions would be Python arithmetic)
        # compiled: not zero-filled (memory that is written before it is read; see finish)
        self.buf = PyByteArray_FromStringAndSize(cython.NULL, max(size, 64)) if cython.compiled else bytearray(_HEAD)  # noqa: F821
        self.scratch = bytearray(256)
        self.pos = _HEAD
        self.count = 0

    @cython.cfunc
    @cython.locals(need=cython.Py_ssize_t)
    def _room(self, n: cython.Py_ssize_t):
        need = self.pos + n
        while need > len(self.buf):
            self.buf *= 2  # doubles (one realloc and copy; no zero-filled temporary): log(n) growths per call

    @cython.cfunc
    def byte(self, b: cython.int):
        if not cython.compiled:
            self.buf.append(b)
            return
        self._room(1)
        self.buf[self.pos] = b
        self.pos += 1

    @cython.cfunc
    @cython.locals(n=cython.Py_ssize_t, at=cython.Py_ssize_t)
    def raw(self, data):
        """Append ``data`` (bytes or bytearray) as is."""
        if not cython.compiled:
            self.buf += data
            return
        n = len(data)
        self._room(n)
        at = self.pos
        if cython.compiled:
            dst: cython.p_char = self.buf
            src: cython.p_char = data
            memcpy(dst + at, src, n)  # noqa: F821 - cimported in _pack.pxd
        else:
            self.buf[at:at + n] = data
        self.pos = at + n

    @cython.cfunc
    @cython.locals(n=cython.Py_ssize_t)
    def str_head(self, n: cython.Py_ssize_t):
        """The header of a msgpack *str* of ``n`` bytes (see :func:`_str`), as msgspec writes it."""
        if not cython.compiled:
            self.buf += _str_head(n)
            return
        if n < 32:
            self.byte(0xA0 | n)
        elif n < 256:
            self._room(2)
            self.buf[self.pos] = 0xD9
            self.buf[self.pos + 1] = n
            self.pos += 2
        elif n < 65536:
            self._room(3)
            self.buf[self.pos] = 0xDA
            self.buf[self.pos + 1] = n >> 8
            self.buf[self.pos + 2] = n & 0xFF
            self.pos += 3
        else:
            self.raw(b"\xdb" + n.to_bytes(4, "big"))

    @cython.cfunc
    @cython.locals(n=cython.Py_ssize_t)
    def str_(self, b):
        """Append ``b`` (bytes, or a str taken as UTF-8) as a msgpack *str*."""
        if cython.compiled and type(b) is str:  # its UTF-8 copied straight in (a uuid: ASCII, its own buffer)
            src: cython.p_const_char = PyUnicode_AsUTF8AndSize(b, cython.address(n))  # noqa: F821 - _pack.pxd
            self.str_head(n)
            self._room(n)
            dst: cython.p_char = self.buf
            memcpy(dst + self.pos, src, n)  # noqa: F821 - cimported in _pack.pxd
            self.pos += n
            return
        if type(b) is not bytes:
            b = b.encode() if isinstance(b, str) else bytes(b)
        if not cython.compiled:  # fewer Python calls per piece (compiled, these are C calls)
            buf = self.buf
            buf += _str_head(len(b))
            buf += b
            return
        self.str_head(len(b))
        self.raw(b)

    @cython.cfunc
    def prio(self, prio):
        """A priority as msgspec encodes it: one byte for 0-127 (a positive fixint, the common case), msgspec's
        encoding otherwise. The one small-int writer of both ops' packing."""
        if type(prio) is int and 0 <= prio < 128:
            self.byte(prio)
        else:
            self.raw(_encode(prio))

    @cython.cfunc
    def encoded_str(self, value):
        """Append the msgpack of ``value`` wrapped as a msgpack *str*; the scratch buffer keeps those bytes (for
        the caller that needs them too) until the next call."""
        _encode_into(value, self.scratch, 0)
        self.str_head(len(self.scratch))
        self.raw(self.scratch)

    @cython.cfunc
    @cython.locals(n=cython.Py_ssize_t, at=cython.Py_ssize_t)
    def finish(self):
        """The bytes of the msgpack array of the ``count`` elements written, its header in the room at the front."""
        n = self.count
        if n < 16:
            at = _HEAD - 1
            self.buf[at] = 0x90 | n
        elif n < 65536:
            at = _HEAD - 3
            self.buf[at] = 0xDC
            self.buf[at + 1] = n >> 8
            self.buf[at + 2] = n & 0xFF
        else:
            at = 0
            self.buf[0:_HEAD] = b"\xdd" + n.to_bytes(4, "big")
        if cython.compiled:
            p: cython.p_char = self.buf
            return p[at:self.pos]
        return bytes(memoryview(self.buf)[at:])


@cython.nonecheck(True)  # a None envelope raises AttributeError, as before its fields were struct members
@cython.locals(i=cython.Py_ssize_t, w=_Buf)
def enqueue_args(envelopes: list, blobs: list, wait):
    """Per-queue arguments of the Lua ``enqueue`` op: ``{queue: (plain, special, index)}``.

    ``plain`` packs ``[prio, uuid, blob]*`` and then ``wait`` once (the same for every envelope of a call; the
    name is not sent: the query side's ``index`` carries it). Each element is a Lua string or number op enqueue
    unpacks, so a field it does not use per task is Redis work for nothing (issue 16). Delayed envelopes (``eta`` set) and unique ones
    (meta ``uq``) go to ``special`` instead, ``[prio, uuid, name, blob, wait, eta ms, key, ttl ms, created ms]*``
    (``b""`` when there are none), so that a plain envelope costs only the two checks below. ``index`` is the
    plain envelopes' query-side argument (see :func:`_index_arg`: P:x:n zsets by task name, ``new`` events).
    """
    out = {}
    index = {}
    special = None
    last = _UNSET
    for i in range(len(envelopes)):
        env = envelopes[i]
        e: EnvelopeSlots = env  # noqa: F821 - cimported in _pack.pxd (compiled: its fields are struct members)
        meta = e.meta
        if e.eta or (meta and "uq" in meta):
            if special is None:
                special = {}
            args = special.get(env.queue)
            if args is None:
                args = special[env.queue] = []
            uq = meta.get("uq") if meta else None
            key = ""
            ttl = "0"
            if uq:
                key = str(uq[0])
                if len(uq) > 1 and uq[1]:
                    ttl = str(int(float(uq[1]) * 1000))
            args.extend((env.priority, env.uuid, env.task_name, _str(blobs[i]), wait, str(int(env.eta * 1000)),
                         key, ttl, _created_ms(env.created_at)))
            continue
        queue = e.queue
        if queue is not last:  # a batch is mostly one queue: its state is looked up when the queue changes
            w = out.get(queue)
            if w is None:
                w = out[queue] = _Buf(len(envelopes) * 128)  # a plain no-op envelope's share is ~110 bytes
                index[queue] = ({}, [])
            ix = index[queue]
            zsets: dict = ix[0]
            events: list = ix[1]
            last = queue
        name = e.task_name
        uuid = e.uuid
        w.prio(e.priority)
        w.str_(uuid)
        w.str_(blobs[i])
        w.count += 3
        z = zsets.get(name)
        if z is None:
            z = zsets[name] = []
        z.append(_created_ms(e.created_at))
        z.append(uuid)
        events.extend((uuid, "new", name, ""))
    for queue in out:
        ix = index[queue]
        w = out[queue]
        w.str_(wait)
        w.count += 1
        out[queue] = (w.finish(), b"", _index_arg(ix[0], ix[1]))
    if special is not None:
        for queue in special:
            plain = out.get(queue)
            out[queue] = (plain[0] if plain is not None else _NO_PLAIN, _encode(special[queue]),
                          plain[2] if plain is not None else b"")
    return out


#: op enqueue's ``plain`` of a call with only delayed or unique envelopes: no triple, and its wait flag
_NO_PLAIN = _encode(["0"])


@cython.nonecheck(True)  # a None envelope raises AttributeError, as before its fields were struct members
@cython.locals(now_ms=cython.longlong, mono_t=cython.double, started=cython.longlong, w=_Buf, o=tuple)
def settle_args(outcomes: list, index, worker, now, mono=0.0, carried=None):
    """Per-queue arguments of the Lua ``settle`` op from ``(delivery, status, returning, tb, child)``.

    ``{queue: (packed, log, replies)}``: ``packed`` holds ``prio, id, uuid, record`` per task and then the
    batch's ``{status: "tasks"}`` (the counts as text; P:count and P:tp are counted per batch: a status per task
    was one more Lua string op settle unpacked per task, issue 16), where ``record`` is the finished task's whole record (see ``redis.lua``, key P:t; its 8th
    element is the delivery count, its 9th the wall-clock ms its run started: ``now`` minus the monotonic
    time since ``Delivery.started``, ``mono`` being ``time.monotonic()`` at ``now``; its fetch time when the
    executor never started it or ``mono`` is 0), built here so that Redis only stores it. ``log`` is the batch's
    query-side argument (:func:`_index_arg`: P:x:f zsets by ``<status>:<name>`` of the errors and cancels,
    the final events, after the ``carried[queue]`` events when given: the ``process`` events of tasks a plain
    XREADGROUP handed out, which this settle writes instead of a call of their own; ``b""`` without index).
    ``replies`` packs the 0-based positions of the tasks whose producer awaits the result (meta ``rw``),
    ``b""`` when none does, and ``early`` lists their ``uuid, record`` for the broker to store and push before the settle itself.
    ``packed`` is written piece by piece into one :class:`_Buf` per queue (compiled: C copies, no per-task
    ``Raw`` objects or list to encode afterwards): the same bytes msgspec makes of that list.
    """
    out = {}
    logs = {}
    counts = {}
    replies = None
    now_ms = int(now)
    mono_t = mono
    last = _UNSET
    for o in outcomes:
        d: Delivery = o[0]  # noqa: F821 - cimported in _pack.pxd (compiled: its fields are struct members)
        queue = d.queue
        if queue is not last:  # a batch is mostly one queue: its state is looked up when the queue changes
            w = out.get(queue)
            if w is None:
                w = out[queue] = _Buf(len(outcomes) * 256)  # a no-op task's share is ~200 bytes (its record)
                before = carried.get(queue) if carried else None
                logs[queue] = ({}, list(before) if before else [])
                counts[queue] = {}
            tally: dict = counts[queue]
            ix = logs[queue]
            zsets: dict = ix[0]
            events: list = ix[1]
            last = queue
        e: EnvelopeSlots = d.envelope  # noqa: F821 - cimported in _pack.pxd (compiled: struct members)
        status = o[1]
        tally[status] = tally.get(status, 0) + 1
        if mono_t and d.started:
            started = int(now_ms - (mono_t - d.started) * 1000)
        else:
            started = int(d.fetched * 1000)
        uuid = e.uuid
        w.prio(d.prio)
        w.str_(d.msg_id)
        w.str_(uuid)
        w.encoded_str((d.raw, status, now, o[2], worker, o[3], o[4], d.deliveries, started))
        meta = e.meta
        if meta and "rw" in meta:
            if replies is None:
                replies = {}
            rq = replies.get(queue)
            if rq is None:
                rq = replies[queue] = ([], [])
            rq[0].append(w.count // 4)
            rq[1].extend((uuid, bytes(w.scratch)))  # the record, for the early reply
        w.count += 4
        if index:
            name = e.task_name
            if status != "success":  # success has no zset of its own (see redis.lua, P:x:f)
                key = status + ":" + name
                z = zsets.get(key)
                if z is None:
                    z = zsets[key] = []
                z.append(_created_ms(e.created_at))
                z.append(uuid)
            events.extend((uuid, status, name, worker))
    for queue in out:
        rq = replies.get(queue) if replies is not None else None
        ix = logs[queue]
        w = out[queue]
        w.raw(_encode({k: str(v) for k, v in counts[queue].items()}))  # text: Lua would sprintf a number
        w.count += 1
        out[queue] = (w.finish(), _index_arg(ix[0], ix[1]) if index else b"",
                      _encode(rq[0]) if rq else b"", rq[1] if rq else _NONE)
    return out


_NONE = []


# ------------------------------------------------------------------ the event feed, read as JSON (no TaskEvent)
_strs = msgspec.msgpack.Decoder(list[str]).decode
_json = msgspec.json.Encoder().encode
#: an event's index in its entry, as text (ids) and bytes (JSON): entries hold a settle or enqueue batch each
_IDX = [str(j) for j in range(4096)]
_IDXB = [j.encode() for j in _IDX]


class _Quoted(dict):
    """A JSON-escaped string (without its quotes) -> its JSON value, ``""`` -> ``null`` (an event's worker_id):
    a worker or status is one of few, so each is quoted once, not once per event."""

    def __missing__(self, key):
        if len(self) > 10000:
            self.clear()
        value = self[key] = b'"%b"' % key if key else b"null"
        return value


_quoted = _Quoted()


@cython.locals(n=cython.Py_ssize_t, end=cython.Py_ssize_t)
def event_json(payload: bytes, ms, seq, queue: str, queue_json: bytes, first, limit, ids: list, data: list):
    """Append the events of one ``P:ev`` entry (its field ``b``: msgpack ``[uuid, status, name, worker]*``,
    written by redis.lua's ``xadd_event``) from index ``first``, at most ``limit``, to ``ids`` (their ids, as
    ``query._event_id``) and ``data`` (their JSON, byte for byte ``msgspec.json.encode`` of the ``TaskEvent``
    that ``RedisQueries.events`` builds); returns how many.

    Why: that path made a ``TaskEvent`` per event and then encoded it, most of a core at 100,000 events a second.
    Here the entry's strings are escaped for JSON in one ``msgspec`` call (the list as a JSON array, split at its
    ``","`` separators: a quote inside a string is always escaped, so the separator cannot occur inside one), the
    entry's time once, and each event's JSON is one ``bytes.join`` driven by ``zip``/``map``: no Python code runs
    per event, compiled or not."""
    items = _strs(payload)
    n = len(items) // 4
    end = min(n, first + limit)
    if first >= end or end > len(_IDX):
        return _event_json_slow(items, ms, seq, queue, queue_json, first, end, ids, data)
    enc = _json(items)
    parts = enc[2:len(enc) - 2].split(b'","')
    id_head = "%d-%d." % (ms, seq)
    ids.extend(map("".join, zip(repeat(id_head), _IDX[first:end], repeat("." + queue))))
    data.extend(map(b"".join, zip(
        repeat(b'{"id":"' + id_head.encode()), _IDXB[first:end],
        repeat(b"." + queue_json[1:len(queue_json) - 1] + b'","uuid":"'), parts[4 * first:4 * end:4],
        repeat(b'","task_name":"'), parts[4 * first + 2:4 * end:4],
        repeat(b'","queue":' + queue_json + b',"status":"'), parts[4 * first + 1:4 * end:4],
        repeat(b'","at":' + _json(ms / 1000) + b',"worker_id":'), map(_quoted.__getitem__, parts[4 * first + 3:4 * end:4]),
        repeat(b"}"))))
    return end - first


def _event_json_slow(items, ms, seq, queue, queue_json, first, end, ids, data):
    """:func:`event_json` for an entry of more than 4,096 events (none is written so large; kept exact)."""
    from qtasks_fast.abc.query import TaskEvent

    for j in range(first, end):  # (no ids[-1]: this module is compiled without wraparound)
        eid = "%d-%d.%d.%s" % (ms, seq, j, queue)
        ids.append(eid)
        data.append(_json(TaskEvent(id=eid, uuid=items[4 * j], task_name=items[4 * j + 2], queue=queue,
                                    status=items[4 * j + 1], at=ms / 1000, worker_id=items[4 * j + 3] or None)))
    return max(0, end - first)
