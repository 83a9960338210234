"""Who may call, over what: the bearer token (checked for every method of both services by one interceptor),
the token's source, TLS and mutual TLS credentials, and the rule for listening beyond this host.

The token is the web app's (:mod:`qtasks_fast.web.auth`): ``--token-file`` (its first line), else
``QTASKS_GRPC_TOKEN``, else ``QTASKS_WEB_TOKEN``, so one secret opens the WebView, the REST API and gRPC of a fleet;
none configured: one is generated and printed once. The bearer check is REST's: the scheme in any case, spaces
around the token ignored. A non-loopback address is refused without a configured token or TLS. TLS files are
checked when read (:func:`checked`), so a bad one is named in one line rather than failing the bind.
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
from qtasks_fast.service.throttle import FailureLimiter

GRPC_ENV, WEB_ENV = "QTASKS_GRPC_TOKEN", "QTASKS_WEB_TOKEN"
#: the methods any caller may use: the standard health check (a Kubernetes gRPC probe sends no metadata)
OPEN_PREFIX = "/grpc.health.v1.Health/"
DENIED = "missing or wrong token: send metadata 'authorization: Bearer <token>'"


def resolve_token(token_file: str | None = None) -> tuple[str, bool]:
    """The token and whether it was configured (file, ``QTASKS_GRPC_TOKEN``, ``QTASKS_WEB_TOKEN``) rather than
    generated now (the caller then prints it once). :class:`ConfigError` for an unreadable or empty file."""
    if token_file:
        try:
            lines = Path(token_file).read_text().strip().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file!r} ({exc.strerror}); check the path") from None
        text = lines[0].strip() if lines else ""  # the first line: a file may carry a comment after it
        if not text:
            raise ConfigError(f"the token file {token_file!r} is empty: write a token into it (16+ characters)")
        return text, True
    for env in (GRPC_ENV, WEB_ENV):
        value = os.environ.get(env, "").strip()
        if value:
            return value, True
    return secrets.token_urlsafe(32), False


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses, with UNAUTHENTICATED, every call without ``authorization: Bearer <token>`` (constant-time) but the
    health check's (:data:`OPEN_PREFIX`); a
    peer address that keeps sending wrong tokens gets RESOURCE_EXHAUSTED for a while, right token or not
    (:mod:`qtasks_fast.service.throttle`, as the web server)."""

    def __init__(self, token: str, limiter: FailureLimiter | None = None) -> None:
        self._expected = f"Bearer {token}".encode()
        self.limiter = limiter or FailureLimiter()

    def allowed(self, metadata: Any) -> bool:
        """The REST API's rule: the scheme in any case, spaces around the token ignored."""
        scheme, _, given = str(dict(metadata or ()).get("authorization", "")).strip().partition(" ")
        offered = f"Bearer {given.strip()}".encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(offered, self._expected)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(OPEN_PREFIX):
            return handler
        metadata = dict(details.invocation_metadata or ())
        allowed = self.allowed(details.invocation_metadata)
        if allowed and self.limiter.quiet():  # the common case: no peer lookup, the method as it is
            return handler
        if not allowed and "authorization" not in metadata:  # no token offered: no guess to count
            return denied(handler)
        return guarded(handler, self.limiter, allowed)


def denied(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without running it."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)
        yield  # pragma: no cover - a generator, so grpc streams it

    return _same_shape(handler, unary, stream)


def peer_address(context: grpc.aio.ServicerContext) -> str:
    """``ipv4:10.0.0.1:5123`` as ``ipv4:10.0.0.1`` (the port changes per connection)."""
    return str(context.peer()).rpartition(":")[0] or str(context.peer())


def guarded(handler: grpc.RpcMethodHandler, limiter: FailureLimiter, allowed: bool) -> grpc.RpcMethodHandler:
    """``handler`` behind the peer's failure limit: RESOURCE_EXHAUSTED while it is out of tries, else the method
    when the token was right, else UNAUTHENTICATED (counted as a failure)."""

    async def refusal(context: grpc.aio.ServicerContext) -> None:
        address = peer_address(context)
        wait = limiter.retry_after(address)
        if wait:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many wrong tokens from this address: try again in {wait} s")
        if not allowed:
            limiter.failed(address)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await refusal(context)
        return await handler.unary_unary(request, context)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await refusal(context)
        async for item in handler.unary_stream(request, context):
            yield item

    return _same_shape(handler, unary, stream)


def _same_shape(handler: grpc.RpcMethodHandler, unary: Any, stream: Any) -> grpc.RpcMethodHandler:
    serdes = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream, **serdes)
    return grpc.unary_unary_rpc_method_handler(unary, **serdes)


def credentials(cert: str, key: str, client_ca: str | None = None) -> grpc.ServerCredentials:
    """TLS with ``cert``/``key`` (PEM files); with ``client_ca``, mutual TLS: clients must present a certificate
    that CA signed. :class:`ConfigError` naming an unreadable or malformed file, or a key not of that certificate
    (checked here with :mod:`ssl`: grpc would only fail the bind, with lines of its own)."""
    checked(cert, key, client_ca)

    def read(path: str, flag: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {flag} {path!r} ({exc.strerror}); check the path") from None

    pair = (read(key, "--tls-key"), read(cert, "--tls-cert"))
    ca = read(client_ca, "--tls-client-ca") if client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


def checked(cert: str, key: str, client_ca: str | None) -> None:
    """:class:`ConfigError` naming the PEM file that is wrong (unreadable, not PEM, key of another certificate)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key"), (client_ca, "--tls-client-ca")):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"cannot read {flag} {path!r}; check the path and its permissions")
    for path, flag in ((cert, "--tls-cert"), (client_ca, "--tls-client-ca")):
        if path is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(path)
            except ssl.SSLError as exc:
                raise ConfigError(f"{flag} {path!r} is not a PEM certificate ({exc.reason}); check the file") from None
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")  # an encrypted key: refused, never a prompt
    except ssl.SSLError as exc:
        if "mismatch" in str(exc).lower():
            raise ConfigError(f"--tls-key {key!r} is not the key of --tls-cert {cert!r}; pass the matching pair") \
                from None
        raise ConfigError(f"--tls-key {key!r} is not an unencrypted PEM private key; check the file") from None


def address(host: str, port: int) -> str:
    """``host:port`` as grpc binds it: an IPv6 literal in brackets (``[::1]:50051``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
