# The C side of ``_pack.pyx`` (Cython reads it next to the .pyx; the pure-Python twin never does): the fields of a
# Delivery as struct members in the settle packing (its layout: ``qtasks_fast/_core.pxd``).
from qtasks_fast._core cimport Delivery
