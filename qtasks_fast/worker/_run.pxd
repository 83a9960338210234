# The C side of ``_run.pyx`` (Cython reads this file next to it when compiling; the pure-Python twin never does).
# Delivery's layout, and one coroutine step inside a contextvars context, with no StopIteration object and no bound ``ctx.run``.
from cpython.ref cimport PyObject, Py_XDECREF

# the fields of a Delivery as struct members (its layout: ``qtasks_fast/_core.pxd``)
from qtasks_fast._core cimport Delivery

cdef extern from "Python.h":
    int _iter_send "PyIter_Send"(object iter, object arg, PyObject **presult)
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1


cdef inline int _raise_current() except -1:
    # returning -1 from an ``except -1`` function makes Cython raise the error already set (PyIter_Send's)
    return -1


cdef inline object send_in(object coro, object ctx, bint *returned):
    """``coro.send(None)`` run in ``ctx``: what it yielded (``returned[0]`` False) or returned (True)."""
    cdef PyObject *res = NULL
    cdef int r
    PyContext_Enter(ctx)
    r = _iter_send(coro, None, &res)
    PyContext_Exit(ctx)
    if r == -1:
        _raise_current()
    value = <object>res
    Py_XDECREF(res)
    returned[0] = r == 0
    return value

# Envelope's fields as struct members (``qtasks_fast/_envelope.pxd``; ``_core`` checks the layout on import)
from qtasks_fast._envelope cimport Envelope as EnvelopeSlots
