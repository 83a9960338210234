"""Who may call, over what: the bearer token (checked for every method of both services by one interceptor),
the token's source, TLS and mutual TLS credentials, and the rule for listening beyond this host.

The token is the web app's (:mod:`qtasks_fast.web.auth`): ``--token-file``, else ``QTASKS_GRPC_TOKEN``, else
``QTASKS_WEB_TOKEN``, so one secret opens the WebView, the REST API and gRPC of a fleet; none configured: one is
generated and printed once. A non-loopback address is refused without a configured token or TLS.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from qtasks_fast.exceptions import ConfigError

GRPC_ENV, WEB_ENV = "QTASKS_GRPC_TOKEN", "QTASKS_WEB_TOKEN"
DENIED = "missing or wrong token: send metadata 'authorization: Bearer <token>'"


def resolve_token(token_file: str | None = None) -> tuple[str, bool]:
    """The token and whether it was configured (file, ``QTASKS_GRPC_TOKEN``, ``QTASKS_WEB_TOKEN``) rather than
    generated now (the caller then prints it once). :class:`ConfigError` for an unreadable or empty file."""
    if token_file:
        try:
            text = Path(token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file!r} ({exc.strerror}); check the path") from None
        if not text:
            raise ConfigError(f"the token file {token_file!r} is empty: write a token into it (16+ characters)")
        return text, True
    for env in (GRPC_ENV, WEB_ENV):
        value = os.environ.get(env, "").strip()
        if value:
            return value, True
    return secrets.token_urlsafe(32), False


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, with UNAUTHENTICATED, every call without ``authorization: Bearer <token>`` (constant-time)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def allowed(self, metadata: Any) -> bool:
        given = dict(metadata or ()).get("authorization", "")
        return hmac.compare_digest(str(given).encode(), self._expected)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or self.allowed(details.invocation_metadata):
            return handler
        return denied(handler)


def denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without running it."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)
        yield  # pragma: no cover - a generator, so grpc streams it

    serdes = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream, **serdes)
    return grpc.unary_unary_rpc_method_handler(unary, **serdes)


def credentials(cert: str, key: str, client_ca: str | None = None) -> grpc.ServerCredentials:
    """TLS with ``cert``/``key`` (PEM files); with ``client_ca``, mutual TLS: clients must present a certificate
    that CA signed. :class:`ConfigError` naming an unreadable file."""

    def read(path: str, flag: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {flag} {path!r} ({exc.strerror}); check the path") from None

    pair = (read(key, "--tls-key"), read(cert, "--tls-cert"))
    ca = read(client_ca, "--tls-client-ca") if client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)
