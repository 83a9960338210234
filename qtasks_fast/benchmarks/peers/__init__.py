"""Side-by-side comparison with other Python task queues (``python -m qtasks_fast.benchmarks.peers``).

One small adapter module per peer (``celery``, ``dramatiq``, ``arq``, ``taskiq``,
``rq``, ``saq``, ``streaq``, ``huey``, ``qtasks``), each run in a separate venv
(``QTASKS_PEERS_PYTHON``) as a subprocess, so a broken peer never crashes a run.

This ``__init__`` is imported in both venvs: keep it free of third-party imports.
"""

from __future__ import annotations

from typing import Any

PEERS: tuple[str, ...] = ("celery", "dramatiq", "arq", "taskiq", "rq", "saq", "streaq", "huey", "qtasks")

__all__ = ["PEERS", "run"]


def run(args: Any, progress: Any = None) -> list[dict[str, Any]]:
    """Run the peer comparison; see :func:`qtasks_fast.benchmarks.peers.runner.run`."""
    from .runner import run as _run

    return _run(args, progress)
