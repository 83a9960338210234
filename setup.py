"""Builds the compiled dispatch core ``qtasks_fast._core`` from ``qtasks_fast/_core.pyx``, the worker's per-task
loop ``qtasks_fast.worker._run`` from ``worker/_run.pyx`` (+ ``_run.pxd``), and the Redis backend's argument packing
``qtasks_fast.backends.redis._pack`` from its ``_pack.pyx`` (all with -O3)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "qtasks_fast._core",
        ["qtasks_fast/_core.pyx"],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "qtasks_fast.worker._run",
        ["qtasks_fast/worker/_run.pyx"],
        extra_compile_args=["-O3"],
    ),
    Extension(
        "qtasks_fast.backends.redis._pack",
        ["qtasks_fast/backends/redis/_pack.pyx"],
        extra_compile_args=["-O3"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )
)
