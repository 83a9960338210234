"""Where the embedded backend keeps its file when no URL names one, and the environment variables of the URL.

Backend-neutral on purpose: the app reports the location (``broker_source``) without importing SQLite code.
"""

from __future__ import annotations

import os

DEFAULT_SQLITE_DIR = ".qtasks_fast"
#: the environment variables of the broker URL and of the embedded database's file
ENV_URL, ENV_SQLITE_PATH = "QTASKS_BROKER_URL", "QTASKS_SQLITE_PATH"


def user_data_dir() -> str:
    """The per-user fallback directory of embedded databases: ``$XDG_DATA_HOME/qtasks_fast`` (default
    ``~/.local/share/qtasks_fast``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "qtasks_fast")


def _writable(directory: str) -> bool:
    own = os.path.join(directory, DEFAULT_SQLITE_DIR)
    if os.path.isdir(own):
        return os.access(own, os.W_OK | os.X_OK)
    return os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)


def sqlite_location(app_name: str, defined_in: str | None = None) -> tuple[str, str]:
    """Where the embedded backend keeps its file when no URL names one, and why: ``(path, source)``.

    Never relative to the working directory, so a producer started elsewhere shares the workers' file:
    ``$QTASKS_SQLITE_PATH``, else ``.qtasks_fast/<app>.sqlite3`` next to ``defined_in`` (the file of the
    module that created the app: workers and producers import the same one), else, when there is no
    such file (an interactive session) or its directory is not writable, :func:`user_data_dir`.
    """
    path = os.environ.get(ENV_SQLITE_PATH)
    if path:
        return path, f"env {ENV_SQLITE_PATH}"
    if defined_in and _writable(os.path.dirname(defined_in)):
        return (os.path.join(os.path.dirname(defined_in), DEFAULT_SQLITE_DIR, f"{app_name}.sqlite3"),
                f"default: next to {os.path.basename(defined_in)}, the app's module")
    why = "not writable" if defined_in else "no module file"
    return os.path.join(user_data_dir(), f"{app_name}.sqlite3"), f"default: per-user data dir ({why} next to the app)"


def default_sqlite_path(app_name: str, defined_in: str | None = None) -> str:
    """The path of :func:`sqlite_location`."""
    return sqlite_location(app_name, defined_in)[0]


def sqlite_url_path(url: str) -> str:
    """``sqlite:///rel/x.db`` -> ``rel/x.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``."""
    path = url[len("sqlite://"):].lstrip("/")
    return "/" + path if url.startswith("sqlite:////") else path
