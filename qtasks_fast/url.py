"""Broker URL helpers: redaction, so that a credential never reaches a log line, a repr or an error.

Every form a credential takes in a URL is hidden, whatever the scheme (``redis://``,
``rediss://``, ``unix://``, ``sqlite://``, ``postgres://``, ``amqp://``, ``kafka://``, ...):
the password of ``user:pass@`` and ``:pass@``, a lone ``token@`` (some services take the
credential as the user name), and the value of any query or fragment parameter whose name
looks like a secret (``password``, ``pwd``, ``token``, ``secret``, ``api_key``, ``sas``,
``sig``, ``auth``, ...). The rules lean towards hiding too much: a URL that cannot be
parsed (an unencoded ``@`` or ``/`` in the password) still hides all before its last ``@``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

#: parts of a parameter name that mark its value as a secret (matched in the lower-cased, unquoted name)
SECRET_WORDS = ("pass", "pwd", "token", "secret", "key", "auth", "cred", "sas", "sig", "session", "cookie",
                "private")
MASK = "***"
_PARAM = re.compile(r"([^&;=]*)(=?)([^&;]*)")


def secret_name(name: str) -> bool:
    """True when a query parameter called ``name`` may hold a credential."""
    lowered = unquote(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def _params(text: str) -> str:
    """``a=1&password=x`` -> ``a=1&password=***`` (``&`` and ``;`` separated; other text kept as it is)."""
    return _PARAM.sub(lambda m: f"{m[1]}={MASK}" if m[2] and secret_name(m[1]) else m[0], text)


def redact(url: str) -> str:
    """``redis://user:secret@host:6379/0?token=t`` -> ``redis://user:***@host:6379/0?token=***``."""
    if not isinstance(url, str):
        return "<not a url>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at >= 0:  # userinfo: up to the last @, even past a / ? or # that a careless password may hold
        userinfo, rest = rest[:at], rest[at + 1:]
        user, colon, _ = userinfo.partition(":")
        keep_user = colon and not any(c in user for c in "/?#")
        rest = (f"{user}:{MASK}@" if keep_user else f"{MASK}@") + rest
    head, hash_, fragment = rest.partition("#")
    path, qmark, query = head.partition("?")
    out = path + qmark + _params(query) + hash_ + _params(fragment)
    return f"{scheme}{sep}{out}"


def has_secret(url: str) -> bool:
    """True when ``url`` carries a credential that :func:`redact` hides."""
    return redact(url) != url
