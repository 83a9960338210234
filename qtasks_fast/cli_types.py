"""Argument types of the ``qtasks-fast`` parsers: a bad value is argparse's one-line error and exit code 2.

argparse also parses a string default with the ``type``, so a value read from ``QTASKS_<FLAG>`` is
checked the same way, before anything is imported or contacted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def whole(least: int, env: str | None = None, most: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``least`` (and at most ``most``). A default read from
    ``QTASKS_<env>`` is parsed by it too (argparse parses string defaults), so a bad environment value is one line
    as well."""
    where = f" (the flag, or env QTASKS_{env})" if env else ""

    def parse(raw: str) -> int:
        try:
            n = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number{where}") from None
        if n < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {n}{where}")
        if most is not None and n > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, not {n}{where}")
        return n

    return parse


def log_level(raw: str) -> str:
    """An argparse ``type``: one of :data:`LOG_LEVELS` (any case)."""
    if raw.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a log level: use DEBUG, INFO, WARNING or ERROR (the flag, "
                                         "or env QTASKS_LOG_LEVEL)")
    return raw.upper()


def worker_id(raw: str) -> str:
    """An argparse ``type``: a worker id with a visible character and no whitespace or control character
    (``--worker-id ""`` named the processes ``-0``, ``-1``: consumer names no one can tell apart)."""
    if not raw or any(c.isspace() or not c.isprintable() for c in raw):
        raise argparse.ArgumentTypeError(f"{raw!r} is not a worker id: use letters, digits and -_. such as web1 (the "
                                         "flag, or env QTASKS_WORKER_ID; default: the hostname)")
    return raw


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def moment(raw: str) -> float:
    """An argparse ``type``: a point in time as epoch seconds, written ``10m``/``2h``/``1d``/``30s`` (that long
    ago) or ISO 8601 (``2026-12-07T10:00``; UTC when it names no zone)."""
    import datetime as _dt
    import time

    text = raw.strip()
    if text[:-1].replace(".", "", 1).isdigit() and text[-1:] in _UNITS:
        return time.time() - float(text[:-1]) * _UNITS[text[-1]]
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a time: write 10m, 2h or 1d (that long ago) or ISO 8601 "
                                         "such as 2026-12-07T10:00 (UTC unless it names a zone)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()

