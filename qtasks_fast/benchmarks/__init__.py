"""Benchmarks of qtasks_fast: ``python -m qtasks_fast.benchmarks --help`` (or ``qtasks-fast bench --help``)."""
