"""The service layer's typed errors: each surface maps them to its own codes once (REST: 404/422/403/503,
gRPC: NOT_FOUND/INVALID_ARGUMENT/PERMISSION_DENIED/UNAVAILABLE), so no surface turns one into a 500."""

from __future__ import annotations

from qtasks_fast.exceptions import QTasksError


class ServiceError(QTasksError):
    """Base of the errors a caller of :mod:`qtasks_fast.service` can fix; the message says how."""


class NotFound(ServiceError, LookupError):
    """No such task, dead letter or task name; ``registered`` lists the task names the app knows (for a
    submit by an unknown name), so a client sees what it could have meant."""

    def __init__(self, message: str, registered: list[str] | None = None) -> None:
        super().__init__(message)
        self.registered = registered


class BadRequest(ServiceError, ValueError):
    """A malformed value; ``field`` names it (``"limit"``, ``"filter.created_after"``, ``"args"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ReadOnly(ServiceError, PermissionError):
    """A mutation asked of a read-only surface (``qtasks-fast web --read-only``)."""


class Unavailable(ServiceError):
    """The broker cannot be reached or lacks the capability the call needs; the message names which."""


def field_named(message: str, default: str) -> str:
    """The field a validation message names: msgspec's ``... - at `$.filter.status``` (``filter.status``) and
    ``Object missing required field `name```, or TaskFilter's own ``TaskFilter.created_after must ...``."""
    import re

    at = re.search(r"at `\$\.?([^`]*)`", message)
    path = at.group(1) if at else ""
    missing = re.search(r"missing required field `([^`]+)`", message)
    if missing:
        return f"{path}.{missing.group(1)}" if path else missing.group(1)
    own = re.search(r"TaskFilter\.(\w+)", message)
    if own:
        return own.group(1)
    return path or default
