"""Authentication, always on: one token; API clients send it as ``Authorization: Bearer``, a browser signs in
with it once and gets an HttpOnly, SameSite=Strict session cookie; a browser's mutations also carry a CSRF token.

The token comes from ``QTASKS_WEB_TOKEN``, a file (``--token-file``), or is generated at start and printed once
(:func:`resolve_token`). Sessions are stateless: the cookie is ``<expiry>.<nonce>.<HMAC>`` keyed by a hash of the
token, so changing the token signs every browser out and a restart keeps them signed in; the CSRF token is an
HMAC of the session's nonce (:func:`csrf_token`), sent back as the ``X-CSRF-Token`` header (htmx: ``hx-headers``
on the body) or the ``csrf_token`` form field. Comparisons are constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from starlette.requests import HTTPConnection

COOKIE = "qtasks_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
#: how long a browser session lasts, in seconds
SESSION_SECONDS = 12 * 3600
ENV = "QTASKS_WEB_TOKEN"


class TokenError(ValueError):
    """A token that cannot be used (empty file, unreadable file); the message says what to do."""


def resolve_token(token: str | None = None, token_file: str | None = None) -> tuple[str, bool]:
    """The token and whether it was configured (``token``, else the file, else ``QTASKS_WEB_TOKEN``) rather
    than generated now (then the caller prints it once)."""
    if token:
        return token, True
    if token_file:
        try:
            text = Path(token_file).read_text().strip()
        except OSError as exc:
            raise TokenError(f"cannot read the token file {token_file!r} ({exc.strerror}); check the path") from None
        if not text:
            raise TokenError(f"the token file {token_file!r} is empty: write a token into it (16+ characters)")
        return text, True
    env = os.environ.get(ENV, "").strip()
    if env:
        return env, True
    return secrets.token_urlsafe(32), False


class Auth:
    """Checks tokens, sessions and CSRF tokens for one server."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._key = hashlib.sha256(b"qtasks-web-session:" + self._token).digest()
        #: sessions signed out before their expiry (nonce -> expiry): a copy of the cookie kept elsewhere stops
        #: working on this server too (sessions are stateless: other servers of the fleet accept it until it
        #: expires; changing the token signs every session out everywhere)
        self._signed_out: dict[str, int] = {}

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self._token)

    def bearer_ok(self, conn: HTTPConnection) -> bool:
        scheme, _, value = conn.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self) -> str:
        body = f"{int(time.time()) + SESSION_SECONDS}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    def session(self, conn: HTTPConnection) -> str | None:
        """The session's nonce when the cookie is valid and not expired, else None."""
        cookie = conn.cookies.get(COOKIE, "")
        expiry, _, rest = cookie.partition(".")
        nonce, _, sig = rest.partition(".")
        if not (expiry.isdigit() and nonce and sig) or int(expiry) < time.time() or nonce in self._signed_out:
            return None
        return nonce if hmac.compare_digest(sig, self._sign(f"{expiry}.{nonce}")) else None

    def sign_out(self, conn: HTTPConnection) -> None:
        """End the session of ``conn``'s cookie on this server (the browser drops the cookie as well)."""
        nonce = self.session(conn)
        if nonce is None:
            return
        now = time.time()
        self._signed_out = {n: e for n, e in self._signed_out.items() if e >= now}
        self._signed_out[nonce] = int(conn.cookies.get(COOKIE, "").partition(".")[0])

    def csrf_token(self, nonce: str) -> str:
        return self._sign(f"csrf:{nonce}")

    def csrf_ok(self, nonce: str, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(str(offered), self.csrf_token(nonce))

    def notice_sig(self, nonce: str, text: str) -> str:
        """The signature of a notice the server shows this session after an action (``?notice=...&ns=...``):
        a link someone else wrote cannot put official-looking text on the page (see ``pages_base.back``)."""
        return self._sign(f"notice:{nonce}:{text}")[:32]

    def notice_ok(self, nonce: str, text: str, offered: str) -> bool:
        return bool(offered) and hmac.compare_digest(offered, self.notice_sig(nonce, text))


def who(conn: HTTPConnection) -> str:
    """The audit log's ``who``: the session (its nonce's first characters) or ``api`` (the bearer token)."""
    nonce = conn.scope.get("qtasks.session")
    return f"web:{nonce[:8]}" if nonce else "api"
