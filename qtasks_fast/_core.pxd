# The C side of ``_core.pyx`` (Cython reads it next to the .pyx; the pure-Python twin never does): the layout of
# ``Delivery``, declared here so that the other compiled modules (``worker/_run.pyx``, the Redis backend's
# ``_pack.pyx``) cimport it and read and write its fields as struct members instead of by name (issue 16).

cdef class Delivery:
    cdef public object queue
    cdef public object prio
    cdef public object msg_id
    cdef public object raw
    cdef public object deliveries
    cdef public object envelope
    cdef public object handler
    # ``time.monotonic()`` when the executor started it; 0 until then
    cdef public double started
    # wall-clock time it was decoded after its fetch: its start time until the executor starts it
    cdef public double fetched

# Envelope's fields as struct members (see ``_envelope.pxd``), and the check ``_core`` makes of that layout on import
from qtasks_fast._envelope cimport Envelope as EnvelopeSlots, envelope_layout_ok
# a uuid's characters without a copy (ASCII text: its own buffer)
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
