# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=True
"""The dispatch hot path: everything done once per task between Redis and the task function.

Written in the Python subset of Cython (types as annotations) on purpose: ``setup.py`` compiles it to
``qtasks_fast._core``, and ``qtasks_fast._corelib`` can load the very same file
as plain Python (``QTASKS_PURE_PYTHON=1``), so the benchmark that compares the
two runs identical code. Nothing here does I/O, and nothing is specific to a backend: what only one
backend needs (the Redis script's argument packing) lives in that backend (``backends/redis/_pack.pyx``).
"""

import os
import time
import uuid as _uuid_mod

import msgspec

from qtasks_fast.schemas import Envelope

try:
    import cython  # at compile time: Cython's types; at run time (pure Python): its shadow module
except ImportError:  # pure Python without Cython installed: the same no-op names
    from qtasks_fast import _cyshim as cython

_decode = msgspec.msgpack.Decoder(Envelope).decode

# compiled, the hot loops read Envelope's fields as struct members (``_envelope.pxd``): only if they are where that
# file says (else this extension refuses to load and ``_corelib`` runs the pure-Python twin, with its warning)
if cython.compiled and not envelope_layout_ok(Envelope):  # noqa: F821 - cimported in _core.pxd
    raise ImportError("qtasks_fast._core: this msgspec lays out Envelope's fields other than _envelope.pxd says")
_encode = msgspec.msgpack.Encoder().encode


@cython.cclass
class Delivery:
    """One message handed to this worker: where it came from and what it says.

    A C struct when compiled (``cython.cclass``; its fields are declared in ``_core.pxd``, which the other
    compiled modules cimport): :func:`decode_batch` fills its fields without a Python-level ``__init__`` call, and
    the worker's loop (``worker/_run.pyx``) and the settle packing read and write them as struct members.
    """

    def __init__(self, queue, prio, msg_id, raw, deliveries):
        self.queue = queue
        self.prio = prio
        self.msg_id = msg_id
        self.raw = raw
        self.deliveries = deliveries
        self.envelope = None
        self.handler = None
        self.started = 0.0
        self.fetched = 0.0

    def __repr__(self):
        name = self.envelope.task_name if self.envelope is not None else "?"
        uuid = self.envelope.uuid if self.envelope is not None else "?"
        return "<Delivery %s %s %s/%s>" % (name, uuid, self.queue, self.msg_id)


@cython.locals(i=cython.Py_ssize_t, n=cython.Py_ssize_t, start=cython.Py_ssize_t, size=cython.Py_ssize_t,
               limit=cython.Py_ssize_t, now=cython.double, d=Delivery, uuids_ok=cython.bint, each=cython.bint)
def decode_batch(queue, flat: list, handlers, max_size, ready: list, bad: list):
    """Turn one fetch reply ``[prio, id, body, deliveries]*`` into deliveries.

    Runnable ones (decoded, canonical uuid, the queue they were read from, handler known) go to ``ready``
    with their handler;
    the others go to ``bad`` as ``(delivery, reason)`` for the dead-letter stream. Whatever the
    decoder raises on one body (a ``RecursionError`` from nesting ~1000 deep, a ``MemoryError``)
    dead-letters that body only: its batch-mates go on. The uuids of the batch are checked in one
    pass over their concatenation (see :func:`_uuids_ok`), not one call per message.
    Compiled, the loop is C: indices are machine integers, each delivery's fields are set in its struct
    (``Delivery.__new__``, no ``__init__`` call), and each uuid is checked by a C loop over its characters
    (:func:`_uuid_ok`) instead.
    """
    i = 0
    n = len(flat)
    start = len(ready)
    limit = max_size
    uuids = []
    uuids_ok = True
    each = cython.compiled  # (a local: as Python, a global and an attribute lookup per delivery otherwise)
    now = time.time()
    decode = _decode
    while i + 3 < n:
        raw = flat[i + 2]
        d = Delivery.__new__(Delivery)
        d.queue = queue
        d.prio = flat[i]
        d.msg_id = flat[i + 1]
        d.raw = raw
        d.deliveries = flat[i + 3]
        d.envelope = None
        d.handler = None
        d.started = 0.0
        d.fetched = now
        i += 4
        size = len(raw)
        if size > limit:
            bad.append((d, "payload of %d bytes exceeds the %d byte limit (max_payload)" % (size, limit)))
            continue
        try:
            env = decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            bad.append((d, "malformed message: %s" % (exc,)))
            continue
        except Exception as exc:  # noqa: BLE001 - one unreadable body must not stop the fetcher
            bad.append((d, unreadable(exc)))
            continue
        d.envelope = env
        e: EnvelopeSlots = env  # noqa: F821 - cimported in _core.pxd (compiled: its fields are struct members)
        if e.queue != queue:  # a foreign producer's envelope: its retries and records would go astray
            bad.append((d, "envelope names queue %r but was read from queue %r: a producer wrote it to the "
                           "wrong queue" % (e.queue, queue)))
            continue
        name = e.task_name
        handler = handlers.get(name)
        if handler is None:
            bad.append((d, "unknown task %r: no worker handler is registered under that name" % (name,)))
            continue
        d.handler = handler
        if each:
            uuids_ok = _uuid_ok(e.uuid) and uuids_ok
        else:
            uuids.append(e.uuid)
        ready.append(d)
    if not each and uuids:
        uuids_ok = _uuids_ok(uuids)
    if not uuids_ok:
        _drop_bad_uuids(ready, start, bad)


@cython.locals(n=cython.Py_ssize_t)
def add_entries(flat: list, prio, entries):
    """Append ``prio, id, body, 1`` to ``flat`` for each raw stream entry ``[id, fields]`` of an XREADGROUP reply;
    the number of entries.

    ``body`` is field ``d`` of ``fields`` (our producers write ``[b"u", uuid, b"d", envelope]``; another writer's
    order or extra fields are read by name), ``b""`` without both ``u`` and ``d``: an entry deleted under a
    pending read has none, and the fetcher dead-letters it as malformed. Compiled, this is the per-entry loop
    of the worker's plain reads in C (it was ~0.3 µs of Python per task).
    """
    n = 0
    for entry in entries:
        fields = entry[1]
        if type(fields) is list and len(fields) == 4 and fields[0] == b"u" and fields[2] == b"d":
            body = fields[3]
        else:
            body = entry_body(fields)
        flat.append(prio)
        flat.append(entry[0])
        flat.append(body)
        flat.append(1)
        n += 1
    return n


def entry_body(fields):
    """The envelope (field ``d``) of a raw stream entry's fields, b"" without both ``u`` and ``d`` (see
    :func:`add_entries`)."""
    if fields and len(fields) == 4 and fields[0] == b"u" and fields[2] == b"d":
        return fields[3]
    named = dict(zip(fields[::2], fields[1::2])) if fields else {}  # another writer's order or extras
    return named.get(b"d", b"") if b"u" in named else b""


def unreadable(exc):
    """The dead-letter reason of a body whose decoding raised something other than a decode error."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() fails still gets a reason
        text = "<no message>"
    hint = " (arguments nested too deeply?)" if isinstance(exc, RecursionError) else ""
    return "malformed message: decoding raised %s: %s%s" % (type(exc).__name__, text, hint)


def _uuid_table():
    t = bytearray(b"!" * 256)
    for c in b"0123456789abcdefABCDEF":
        t[c] = 48  # "0"
    t[45] = 45  # "-"
    t[124] = 124  # "|"
    return bytes(t)


#: maps each hex digit to "0", keeps "-" and "|", turns anything else into "!"
_UUID_CLASSES = _uuid_table()
_UUID_SHAPE = b"00000000-0000-0000-0000-000000000000|"
_shapes = {}


def _uuids_ok(uuids: list):
    """True when every string of ``uuids`` is a canonical UUID (``8-4-4-4-12`` hex digits, any case).

    One pass over ``"|".join(uuids)``: its bytes mapped to character classes (hex digit, ``-``,
    ``|``, other) must equal ``n`` canonical shapes separated by ``|``. As no uuid can contain
    ``|`` then, each string is exactly one shape: a uuid such as ``../../x`` (it becomes a Redis key
    suffix) fails. ~13 instructions per character for the whole batch, against ~200 ns per message
    for a regular expression.
    """
    n = len(uuids)
    shape = _shapes.get(n)
    if shape is None:
        shape = (_UUID_SHAPE * n)[:-1]
        if n <= 4096:
            _shapes[n] = shape
    return "|".join(uuids).encode("ascii", "replace").translate(_UUID_CLASSES) == shape


@cython.cfunc
@cython.locals(i=cython.Py_ssize_t, n=cython.Py_ssize_t, c=cython.uchar)
def _uuid_ok(u) -> cython.bint:
    """:func:`_uuids_ok` of one uuid; compiled, a C loop over its 36 characters (~150 instructions, where the batch
    check costs ~470 per uuid compiled: the join, the encoding and the translation each copy the batch)."""
    if not cython.compiled:
        return _uuids_ok([u])
    if type(u) is not str:
        return False
    p: cython.p_const_char = PyUnicode_AsUTF8AndSize(u, cython.address(n))  # noqa: F821 - cimported in _core.pxd
    if n != 36:
        return False
    for i in range(36):
        c = p[i]
        if i == 8 or i == 13 or i == 18 or i == 23:
            if c != 45:  # "-"
                return False
        elif not (48 <= c <= 57 or 97 <= (c | 32) <= 102):  # 0-9, a-f, A-F
            return False
    return True


def _drop_bad_uuids(ready: list, start: int, bad: list):
    """Move the deliveries of ``ready[start:]`` whose uuid is not canonical to ``bad`` (the rare path),
    without their envelope: nothing is stored under such a uuid."""
    kept = []
    for d in ready[start:]:
        if _uuids_ok([d.envelope.uuid]):
            kept.append(d)
        else:
            bad.append((d, "malformed message: uuid %r is not a canonical UUID (8-4-4-4-12 hex digits)"
                        % (d.envelope.uuid[:64],)))
            d.envelope = None  # no record is written under that uuid (it would be a key suffix)
            d.handler = None
    ready[start:] = kept


_UUID = _uuid_mod.UUID
_SAFE = _uuid_mod.SafeUUID.unknown
_setattr = object.__setattr__
_new = object.__new__
_from_bytes = int.from_bytes
_POOL_SIZE = 4096
_pool = b""
#: the pool's UUIDs as text, 36 characters each (see :func:`_refill`)
_text = ""
_pos = _POOL_SIZE
#: where hex digit ``j`` of a UUID goes in its 36-character text (after the dashes before it)
_DIGIT_AT = [j + (j >= 8) + (j >= 12) + (j >= 16) + (j >= 20) for j in range(32)]


def _reset_pool():
    # a forked child must never replay its parent's random bytes
    global _pool, _text, _pos
    _pool = b""
    _text = ""
    _pos = _POOL_SIZE


os.register_at_fork(after_in_child=_reset_pool)


def _refill():
    """256 UUIDs' worth of random bytes, with the version 4 and variant bits already set, and their text.

    Why the text here: :func:`new_uuid` was about half of a bulk enqueue's per-call build time, and formatting
    each UUID's text (``hex`` then four dashes joined in) a third of that; for the whole pool it is 32 strided
    copies of 256 hex digits, done in C, and a UUID's text is then one slice (``new_uuid`` 0.65x CPU)."""
    global _pool, _text, _pos
    pool = bytearray(os.urandom(_POOL_SIZE))
    for i in range(6, _POOL_SIZE, 16):
        pool[i] = (pool[i] & 0x0F) | 0x40
        pool[i + 2] = (pool[i + 2] & 0x3F) | 0x80
    digits = bytearray(pool.hex(), "ascii")
    text = bytearray(b"-" * (_POOL_SIZE // 16 * 36))
    for j in range(32):
        text[_DIGIT_AT[j]::36] = digits[j::32]
    _pool = bytes(pool)
    _text = text.decode("ascii")
    _pos = 0


def new_uuid():
    """A random (version 4) UUID as ``(UUID, str)``.

    ``uuid.uuid4()`` costs a getrandom syscall and argument checks per call, and ``str(UUID)``
    formats an int in Python; producers make one per task, so random bytes come from a pooled
    ``os.urandom`` read, the string is a slice of the pool's text (:func:`_refill`) and the UUID object is
    built without re-validation.
    """
    global _pos
    if _pos + 16 > _POOL_SIZE:
        _refill()
    pos = _pos
    b = _pool[pos:pos + 16]
    _pos = pos + 16
    at = pos // 16 * 36
    u = _new(_UUID)
    _setattr(u, "int", _from_bytes(b, "big"))
    _setattr(u, "is_safe", _SAFE)
    return u, _text[at:at + 36]


def encode(value):
    """msgpack bytes of a task result (raises TypeError for unsupported types)."""
    return _encode(value)


def encode_envelopes(envelopes: list):
    """msgpack bytes of each envelope (what every backend stores; a backend packs them its own way)."""
    return [_encode(e) for e in envelopes]
