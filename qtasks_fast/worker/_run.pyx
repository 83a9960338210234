# cython: language_level=3, boundscheck=False, wraparound=False, infer_types=True
"""The worker's per-task bookkeeping of async tasks, in typed code (issue 16): start, first step, outcome, done.

Why: a worker draining no-op tasks spent ~70 % of its CPU in the interpreter itself (the eval loop, frames,
attribute lookups) running a handful of small Python functions per task: the eager runner's loop
(``worker/eager.py``), ``Executor._finish`` and ``Worker._on_done``. Compiled, those are C: the first step of a
task's coroutine is one ``PyIter_Send`` inside its context (no ``ctx.run`` bound call, no ``StopIteration``
object for a task that returns at once), a success is encoded and queued without a Python frame, and the
worker's counters and wake-ups are updated in place.

Like ``_core.pyx`` it is written in the Python subset of Cython: ``setup.py`` compiles it to
``qtasks_fast.worker._run``, and :func:`qtasks_fast._corelib.load_compiled` runs the very same file as Python
when asked (``QTASKS_PURE_PYTHON=1``) or when no compiled module exists; the C-only step (``send_in``) lives in
``_run.pxd``, and the pure twin takes ``ctx.run(coro.send, None)`` there instead. Semantics are those of the
Python it replaced: a fresh context copy per task, the task's ``current_task`` set before it, an outcome stored
before anything is acked (the settler, unchanged), every path other than a plain success through
``Executor._finish`` (failures, retries, chain steps, results the plain encoder refuses).

Typed state (issue 16): ~40 % of the compiled loop went to CPython's generic attribute lookup, reading the fields
of ``Worker`` and ``Delivery`` by name. So ``Delivery`` is cimported from ``_core.pxd`` (its fields are struct
members here), and the worker's per-task state lives in :class:`RunState`, a compiled base class of ``Worker``
whose counters are C integers. Python code reads and writes those fields as before (they are properties).
"""

from __future__ import annotations  # (as Python, the annotations that name cimported types are never evaluated)

import contextvars
import time
from types import MethodType

import msgspec

from qtasks_fast import _corelib
from qtasks_fast.log import current_task
from qtasks_fast.worker.ownership import reconfirm as _reconfirm

try:
    import cython  # at compile time: Cython's types; at run time (pure Python): its shadow module
except ImportError:  # pure Python without Cython installed: the same no-op names
    from qtasks_fast import _cyshim as cython

_copy_context = contextvars.copy_context
_monotonic = time.monotonic
_encode = _corelib.encode
_set_task = current_task.set
_ENCODE_ERRORS = (TypeError, msgspec.EncodeError, OverflowError)
#: the ``followups`` of a plain success (shared, never mutated: ``executor.NO_FOLLOWUPS`` is this list)
NO_FOLLOWUPS = []


@cython.cclass
class RunState:
    """What the worker's per-task path reads and writes of a ``Worker`` (its base class), typed.

    Compiled, each field is a struct member: ``w.active -= 1`` is a C decrement, not a dict lookup, a Python int
    operation and a dict store. ``Worker.__init__`` sets every field; Python code uses them as plain attributes.
    """

    #: outcomes waiting for the settler, and the envelopes to enqueue with them (retry child, next chain step)
    _done = cython.declare(list, visibility="public")
    _retries = cython.declare(list, visibility="public")
    #: finished and not yet settled; started and not finished; the cap on ``active``
    unsettled = cython.declare(cython.Py_ssize_t, visibility="public")
    active = cython.declare(cython.Py_ssize_t, visibility="public")
    concurrency = cython.declare(cython.Py_ssize_t, visibility="public")
    #: outcomes settled so far, and of those, not ``success``
    settled = cython.declare(cython.Py_ssize_t, visibility="public")
    settled_failed = cython.declare(cython.Py_ssize_t, visibility="public")
    #: fetched but not started (a deque); the deliveries held until settled (a set)
    backlog = cython.declare(object, visibility="public")
    inflight = cython.declare(set, visibility="public")
    #: the settler's and the fetcher's wake-ups (``asyncio.Event``)
    _done_event = cython.declare(object, visibility="public")
    slot_free = cython.declare(object, visibility="public")
    _starting = cython.declare(cython.bint, visibility="public")
    stopping = cython.declare(cython.bint, visibility="public")
    #: monotonic time until which every lease held is known valid (see ownership.py)
    leases_until = cython.declare(cython.double, visibility="public")
    executor = cython.declare(object, visibility="public")


@cython.nonecheck(True)  # a None envelope raises AttributeError, as before its fields were struct members
@cython.locals(returned=cython.bint, debug=cython.bint)
def run_ready(jobs, ex, log):
    """Start the queued async tasks of ``jobs`` one after another (the eager runner's loop, ``eager.py``).

    Each task's first step runs in a fresh copy of the current context, with ``current_task`` set to its
    envelope first. A task that returns in that step is finished here (a plain success: encoded and handed to
    ``ex.on_done``; anything else through ``ex._finish``). Returns ``(delivery, coro, ctx, yielded)`` of the
    first task that suspended, for the runner to own, or None once ``jobs`` is empty. Whether debug lines are
    written is looked up once per call (a level change applies from the next batch).
    """
    debug = log.isEnabledFor(10)
    popleft = jobs.popleft
    validate = ex.validate
    finish = ex._finish
    on_done = ex.on_done
    # the worker's own ``_on_done`` (``task_done`` bound to it): called as the C function it is, no bound call
    state = _state_of(on_done)
    returned = False
    while jobs:
        d: Delivery = popleft()  # noqa: F821 - cimported in _run.pxd (compiled only; not evaluated as Python)
        env = d.envelope
        e: EnvelopeSlots = env  # noqa: F821 - cimported in _run.pxd (compiled: its fields are struct members)
        h = d.handler
        _set_task(env)  # for the task's copy, and the runner's own lines about it
        ctx = _copy_context()
        try:
            if h.echo or (validate and h._validator is not None):
                args, kwargs = ex._args(d)
                coro = h.func(*args, **kwargs)
            else:  # no ``*args``/``**kwargs`` unpacking (a tuple and a dict copy per call) when there is nothing
                args = e.args
                kwargs = e.kwargs
                if kwargs:
                    coro = h.func(*args, **kwargs)
                elif args:
                    coro = h.func(*args)
                else:
                    coro = h.func()
            if cython.compiled:
                value = send_in(coro, ctx, cython.address(returned))  # noqa: F821 - declared in _run.pxd
            else:
                try:
                    value = ctx.run(coro.send, None)
                    returned = False
                except StopIteration as stop:
                    value = stop.value
                    returned = True
        except BaseException as exc:  # noqa: BLE001 - a task's failure is data
            finish(d, None, exc)
            continue
        if not returned:
            return d, coro, ctx, value
        if e.meta:  # a chain step or retry metadata: the general path builds what follows
            finish(d, value, None)
            continue
        try:
            encoded = _encode(value)
        except _ENCODE_ERRORS:  # models, ints wider than 64 bits: the general path's second encoder
            finish(d, value, None)
            continue
        if state is not None:
            _task_done(state, (d, "success", encoded, "", ""), NO_FOLLOWUPS)
        else:
            on_done((d, "success", encoded, "", ""), NO_FOLLOWUPS)
        if debug:
            ex.log_success(d)
    return None


@cython.cfunc
def _state_of(on_done) -> RunState:
    """The worker whose ``task_done`` ``on_done`` is (``Worker._on_done`` bound to it), else None."""
    if type(on_done) is MethodType and on_done.__func__ is task_done and isinstance(on_done.__self__, RunState):
        return on_done.__self__
    return None


def task_done(w: RunState, outcome, followups):
    """``Worker._on_done``: a task finished; queue its outcome and the envelopes to enqueue in the same settle
    (retry child, next chain step), free its slot, start the next from the backlog, wake settler and fetcher.

    An ``asyncio.Event`` already set is left alone (``set`` would only find it set: its ``_value``).
    """
    _task_done(w, outcome, followups)


@cython.cfunc
def _task_done(w: RunState, outcome, followups):
    w._done.append(outcome)
    if followups:
        w._retries.extend(followups)
    w.unsettled += 1
    w.active -= 1
    if w.backlog:
        start_more(w, False)  # the module's own (``Worker.start_more`` is it): no bound method per call
    ev = w._done_event
    if not ev._value:
        ev.set()
    ev = w.slot_free
    if not ev._value:
        ev.set()


def start_more(w: RunState, confirmed=False):
    """``Worker.start_more``: start backlog deliveries while slots are free (``w.executor.submit`` each; one
    that cannot even start ends as an error, the rest go on). Past the known validity of the leases, renew
    first (``ownership.reconfirm``), which calls back with ``confirmed=True``. Not re-entered: an inline task
    that finishes inside the loop leaves the starting to the loop itself."""
    if w._starting:
        return
    backlog = w.backlog
    if backlog and not confirmed and _monotonic() >= w.leases_until:
        _reconfirm(w)  # frozen or cut off past the lease: renew (drops what is lost), then start
        return
    w._starting = True
    try:
        ex = w.executor
        # an Executor's ``submit`` is this module's: called as the C function it is, no bound call per task
        direct = getattr(type(ex), "submit", None) is submit
        run = None if direct else ex.submit
        while backlog and w.active < w.concurrency and not w.stopping:
            w.active += 1
            d = backlog.popleft()
            try:
                if direct:
                    _submit(ex, d)
                else:
                    run(d)
            except Exception as exc:  # noqa: BLE001 - starting one delivery broke: it ends, the rest go on
                ex.crashed(d, exc)
    finally:
        w._starting = False


def submit(ex, d):
    """``Executor.submit``: start ``d``. A plain async task without a time limit (``TaskFunc.plain``, known
    from its first call) is queued for the eager runners here; every other case is ``Executor.start_other``."""
    _submit(ex, d)


@cython.cfunc
@cython.nonecheck(True)
def _submit(ex, d: Delivery):  # noqa: F821 - cimported in _run.pxd
    h = d.handler
    e: EnvelopeSlots = d.envelope  # noqa: F821 - cimported in _run.pxd
    d.started = _monotonic()
    if h.plain and h.is_async and not e.timeout:
        _queue(ex.eager, d)
        return
    ex.start_other(d)


def queue_job(runners, d):
    """``EagerRunners.submit``: queue ``d`` for the runners; wake the idle one, or start one if none exists."""
    _queue(runners, d)


@cython.cfunc
def _queue(runners, d):
    runners.jobs.append(d)
    waiter = runners._waiter
    if waiter is not None:
        if not waiter.done():
            waiter.set_result(None)
    elif not runners._runners:
        runners._spawn(1)


@cython.locals(failed=cython.Py_ssize_t, n=cython.Py_ssize_t)
def settled(w: RunState, outcomes):
    """The settler stored and acked ``outcomes``: count them (the summary line, the registry) and let their
    deliveries leave ``inflight`` (no longer renewed). One C loop instead of a generator and a loop per batch."""
    inflight = w.inflight
    failed = 0
    for o in outcomes:
        if o[1] != "success":
            failed += 1
        inflight.discard(o[0])
    n = len(outcomes)
    w.unsettled -= n
    w.settled += n
    w.settled_failed += failed
