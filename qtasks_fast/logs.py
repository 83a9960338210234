"""QTasks' ``qtasks.logs.Logger``, logging through the ``qtasks_fast`` logger hierarchy.

    logger = Logger(name="shop", subname="Global", default_level=logging.DEBUG)
    app = QueueTasks("shop", log=logger)       # its level and format become the app's (below)
    app.log.debug("ready")                     # 2026-... [qtasks_fast.shop: DEBUG] (QueueTasks) ready

Why a wrapper and not QTasks' own logger: every line of qtasks_fast goes through ``logging.getLogger
("qtasks_fast")`` and its children, which the worker configures (``logs_format``, the worker's level) and a
user's ``logging`` setup can route. A ``Logger`` named ``shop`` logs to ``qtasks_fast.shop``, so its lines
land where qtasks_fast's do, with ``%(subname)s`` (QTasks' component name) on each record.

As in QTasks, making a Logger sets its level on its logger and, when nothing would print its lines (no
handler on the way up to the root), gives the ``qtasks_fast`` logger a stderr handler in its format; a
worker replaces that handler by its own when it starts (``logs_format``). ``QueueTasks(log=Logger(...))``
makes the Logger's level the app's ``logs_default_level_server`` and ``logs_default_level_client`` and its
format the app's ``logs_format``, set as code sets them (a flag or an environment variable still wins).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from qtasks_fast.log import LOGGER_NAME, ContextFilter

if TYPE_CHECKING:
    from qtasks_fast.config import GlobalConfig

#: QTasks' default format
FORMAT = "%(asctime)s [%(name)s: %(levelname)s] (%(subname)s) %(message)s"


def logger_name(name: str) -> str:
    """The ``logging`` name of a Logger called ``name``: under ``qtasks_fast`` (a name already there stays)."""
    return name if name == LOGGER_NAME or name.startswith(LOGGER_NAME + ".") else f"{LOGGER_NAME}.{name}"


class Logger:
    """QTasks' Logger: ``name`` (its logger, under ``qtasks_fast``), ``subname`` (the component, ``%(subname)s``),
    ``default_level`` and ``format`` (QTasks' default when None)."""

    def __init__(self, name: str, subname: str | None = None, default_level: int | str = logging.INFO,
                 format: str | None = None) -> None:  # noqa: A002 - QTasks' parameter name
        self.name = name
        self.subname = subname or "-"
        self.format = format
        self.default_level = default_level
        self.logger = logging.getLogger(logger_name(name))
        if not self.logger.hasHandlers():
            _print_to_stderr(format or FORMAT)
        self.logger.setLevel(default_level)

    def __repr__(self) -> str:
        return f"<Logger {self.name!r} subname={self.subname!r} level={logging.getLevelName(self.default_level)}>"

    def critical(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        """An ERROR line with the traceback of the exception being handled."""
        kwargs.setdefault("exc_info", True)
        self._log(logging.ERROR, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, msg, *args, **kwargs)

    def with_subname(self, new_subname: str, default_level: int | str | None = None,
                     format: str | None = None) -> Logger:  # noqa: A002 - QTasks' parameter name
        """A Logger of the same name for another component (QTasks gives each component its own)."""
        return Logger(self.name, new_subname, default_level=default_level or self.default_level,
                      format=format or self.format)

    def update_logger(self, **kwargs: Any) -> Logger:
        """A Logger with ``name``, ``subname``, ``default_level`` or ``format`` replaced (the others kept)."""
        return Logger(name=kwargs.get("name") or self.name, subname=kwargs.get("subname") or self.subname,
                      default_level=kwargs.get("default_level") or self.default_level,
                      format=kwargs.get("format") or self.format)

    def _log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        extra.setdefault("subname", self.subname)
        kwargs.setdefault("stacklevel", 3)  # the caller of debug()/info()/..., for %(funcName)s and %(lineno)d
        self.logger.log(level, msg, *args, extra=extra, **kwargs)


def apply_to_config(log: Logger, config: GlobalConfig) -> None:
    """``QueueTasks(log=...)``: the Logger's level and format become the app's, as QTasks' components all log
    through the Logger they are given (the worker's lines included)."""
    config.logs_default_level_server = log.default_level
    config.logs_default_level_client = log.default_level
    if log.format:
        config.logs_format = log.format


def _print_to_stderr(fmt: str) -> None:
    """Give the ``qtasks_fast`` logger a stderr handler in ``fmt`` (QTasks' Logger does so for its own logger);
    a worker's logging setup replaces it. Records get ``subname`` and our worker/task attributes."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(ContextFilter("-"))
    handler.qtasks_fast = True  # type: ignore[attr-defined]
    logging.getLogger(LOGGER_NAME).addHandler(handler)


__all__ = ["FORMAT", "Logger", "apply_to_config", "logger_name"]
