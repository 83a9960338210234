"""Builds the compiled dispatch core ``qtasks_fast._core`` from ``qtasks_fast/_core.pyx``, and the Redis backend's
argument packing ``qtasks_fast.backends.redis._pack`` from its ``_pack.pyx`` (both with -O3)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "qtasks_fast._core",
        ["qtasks_fast/_core.pyx"],
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
