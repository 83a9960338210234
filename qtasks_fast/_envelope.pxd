# The C view of ``qtasks_fast.schemas.Envelope`` (a ``msgspec.Struct``) for the compiled hot path (issue 16), cimported
# by ``_core.pyx``, ``worker/_run.pyx`` and ``backends/redis/_pack.pyx`` as ``EnvelopeSlots`` (the pure-Python twins
# never read this file: there a local ``e: EnvelopeSlots`` annotation is never evaluated and ``e.uuid`` is the
# attribute).
#
# Why: each ``env.uuid`` of the compiled loops went through CPython's generic attribute lookup (the type's method
# cache, the member descriptor, ``PyMember_GetOne``): ~100 instructions, ~25 such reads per task across decode,
# run, settle and enqueue. Typed as this struct, a read is one load and an incref.
#
# A msgspec Struct keeps each field in a slot of the object (a member descriptor per field); msgspec (0.23 here) lays them
# out by name. ``_core.pyx`` checks every offset below against the type's own member descriptors when it is
# imported (``envelope_layout_ok``) and refuses to load otherwise (the pure-Python twin then runs, with the
# warning of ``_corelib.load_compiled``), so a msgspec that lays fields out differently cannot be misread.
from cpython.object cimport PyObject

cdef extern from *:
    """
    #include <stddef.h>
    #include "structmember.h"
    typedef struct {
        PyObject_HEAD
        PyObject *args;
        PyObject *created_at;
        PyObject *eta;
        PyObject *kwargs;
        PyObject *meta;
        PyObject *priority;
        PyObject *queue;
        PyObject *retry;
        PyObject *retry_parent_uuid;
        PyObject *task_name;
        PyObject *timeout;
        PyObject *uuid;
    } qtasks_fast_Envelope;
    /* the field names above, and their offsets in the struct */
    static const char *qtasks_fast_envelope_names[] = {"args", "created_at", "eta", "kwargs", "meta", "priority",
        "queue", "retry", "retry_parent_uuid", "task_name", "timeout", "uuid"};
    static const Py_ssize_t qtasks_fast_envelope_offsets[] = {
        offsetof(qtasks_fast_Envelope, args), offsetof(qtasks_fast_Envelope, created_at),
        offsetof(qtasks_fast_Envelope, eta), offsetof(qtasks_fast_Envelope, kwargs),
        offsetof(qtasks_fast_Envelope, meta), offsetof(qtasks_fast_Envelope, priority),
        offsetof(qtasks_fast_Envelope, queue), offsetof(qtasks_fast_Envelope, retry),
        offsetof(qtasks_fast_Envelope, retry_parent_uuid), offsetof(qtasks_fast_Envelope, task_name),
        offsetof(qtasks_fast_Envelope, timeout), offsetof(qtasks_fast_Envelope, uuid)};
    /* a field's member descriptor: its slot's offset and kind (T_OBJECT_EX), -1 for anything else */
    static Py_ssize_t qtasks_fast_slot_offset(PyObject *descr) {
        PyMemberDef *m;
        if (Py_TYPE(descr) != &PyMemberDescr_Type) return -1;
        m = ((PyMemberDescrObject *)descr)->d_member;
        return m->type == T_OBJECT_EX ? m->offset : -1;
    }
    """
    const char **qtasks_fast_envelope_names
    const Py_ssize_t *qtasks_fast_envelope_offsets
    Py_ssize_t qtasks_fast_slot_offset(PyObject *descr)

    ctypedef class qtasks_fast.schemas.envelope.Envelope [object qtasks_fast_Envelope, check_size ignore]:
        cdef object args
        cdef object created_at
        cdef object eta
        cdef object kwargs
        cdef object meta
        cdef object priority
        cdef object queue
        cdef object retry
        cdef object retry_parent_uuid
        cdef object task_name
        cdef object timeout
        cdef object uuid


cdef inline bint envelope_layout_ok(object cls) except -1:
    """Whether ``cls`` keeps each field declared above in the slot declared for it, as its member descriptors say
    (and no others: a field added to ``Envelope`` must be added here too)."""
    cdef Py_ssize_t i
    fields = cls.__struct_fields__
    if len(fields) != 12:
        return False
    for i in range(12):
        name = qtasks_fast_envelope_names[i].decode()
        descr = cls.__dict__.get(name)
        if descr is None or qtasks_fast_slot_offset(<PyObject *>descr) != qtasks_fast_envelope_offsets[i]:
            return False
    return True
