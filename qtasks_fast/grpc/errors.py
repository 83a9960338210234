"""The service layer's errors as gRPC status codes, once for every method of both services.

NOT_FOUND, INVALID_ARGUMENT (the details start with the field's name), PERMISSION_DENIED (read-only),
UNAVAILABLE (the broker); anything else is a bug of ours: INTERNAL with one line, the traceback in the server's
log only. Why never UNKNOWN: grpc answers UNKNOWN (with the exception's text) for an exception that escapes a
method, and a client cannot act on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from qtasks_fast.log import get_logger
from qtasks_fast.service import BadRequest, NotFound, ReadOnly, ServiceError, Unavailable

log = get_logger("grpc")
R = TypeVar("R")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

CODES: dict[type[ServiceError], grpc.StatusCode] = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    ReadOnly: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The code and one-line details for ``exc``."""
    for kind, code in CODES.items():
        if isinstance(exc, kind):
            text = str(exc)
            if isinstance(exc, BadRequest) and not text.startswith(f"{exc.field}:"):
                text = f"{exc.field}: {text}"
            if isinstance(exc, NotFound) and exc.registered is not None and "registered:" not in text:
                text = f"{text}; registered: {', '.join(exc.registered) or 'none'}"
            return code, text.replace("\n", " ")
    log.error("gRPC method failed", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); the server's log has the details"


async def abort(context: Context, exc: BaseException) -> NoReturn:
    code, text = status_of(exc)
    await context.abort(code, text)
    raise AssertionError("abort returned")  # pragma: no cover - abort raises


def unary(fn: Callable[[Any, Any, Context], Awaitable[R]]) -> Callable[[Any, Any, Context], Awaitable[R]]:
    """A unary method whose errors become status codes."""

    @wraps(fn)
    async def method(self: Any, request: Any, context: Context) -> R:
        try:
            return await fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a code (abort's own raise passes through)
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await abort(context, exc)

    return method


def streaming(fn: Callable[[Any, Any, Context], AsyncIterator[R]]) -> Callable[[Any, Any, Context], AsyncIterator[R]]:
    """A server-streaming method whose errors (before or between messages) become status codes."""

    @wraps(fn)
    async def method(self: Any, request: Any, context: Context) -> AsyncIterator[R]:
        try:
            async for item in fn(self, request, context):
                yield item
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, grpc.aio.AbortError):
                raise
            await abort(context, exc)

    return method
