"""Benchmarks of qtasks_fast: ``python -m benchmarks --help`` (or ``qtasks-fast bench --help``)."""
