"""The few names of Cython's ``cython`` module that the hot ``.pyx`` files use, for running them as plain Python.

Why: ``_core.pyx`` and ``backends/redis/_pack.pyx`` are written in Cython's pure-Python syntax (``@cython.cclass``,
``cython.declare``, ``@cython.locals``) so that the compiled module and the fallback are one source. Cython reads
those names at compile time; at run time, without Cython installed, this stands in with the same no-op meanings
Cython's own shadow module gives them (decorators that change nothing, ``declare`` returning None).
"""

from __future__ import annotations

from typing import Any

compiled = False
Py_ssize_t = int
double = float
bint = bool


def cclass(cls: Any) -> Any:
    return cls


def locals(**_types: Any) -> Any:  # noqa: A001 - Cython's own name
    return lambda func: func


def declare(t: Any = None, **_kw: Any) -> Any:
    return None  # what Cython's shadow module returns for the declarations used here (class attributes)


longlong = int
uchar = int


def cfunc(func: Any) -> Any:
    return func


def nonecheck(_on: bool) -> Any:
    return lambda func: func
