# The C side of ``_pack.pyx`` (Cython reads it next to the .pyx; the pure-Python twin never does): the fields of a
# Delivery as struct members in the settle packing (its layout: ``qtasks_fast/_core.pxd``).
from qtasks_fast._core cimport Delivery

# a buffer's pieces are C copies, and a new buffer is not zero-filled first (every byte of it is written before use)
from libc.string cimport memcpy
from cpython.bytearray cimport PyByteArray_FromStringAndSize

# Envelope's fields as struct members (``qtasks_fast/_envelope.pxd``; ``_core`` checks the layout on import)
from qtasks_fast._envelope cimport Envelope as EnvelopeSlots
# a str's UTF-8 bytes without a bytes object (ASCII text: its own buffer)
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
