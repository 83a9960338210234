"""How a REST route is declared: once, with the msgspec types of its query, body and answer, so that parsing,
errors (422 naming the field) and the OpenAPI document (:mod:`qtasks_fast.web.openapi`) come from one place and
cannot disagree.

    @endpoint("GET", "/tasks", query=TaskQuery, answer=TaskPage, summary="List tasks")
    async def list_tasks(call: Call[TaskQuery, None]) -> TaskPage: ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response

from qtasks_fast.service import BadRequest, Caller
from qtasks_fast.service.errors import field_named
from qtasks_fast.web.auth import who

Q = TypeVar("Q")
B = TypeVar("B")
_ENCODER = msgspec.json.Encoder(enc_hook=str)  # a result msgpack cannot map to JSON shows as its text


class Empty(msgspec.Struct):
    """No query parameters, or no body."""


@dataclass
class Call(Generic[Q, B]):
    """One parsed request: path parameters, the query and body as their types, and who asks."""

    request: Request
    path: dict[str, str]
    query: Q
    body: B
    caller: Caller

    @property
    def app(self) -> Any:
        return self.request.app.state.qtasks


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[[Call[Any, Any]], Awaitable[Any]]
    summary: str
    query: type = Empty
    body: type | None = None
    answer: Any = None
    status: int = 200
    #: the error statuses it may answer besides 401/422/503 (404, 403 for mutations)
    errors: tuple[int, ...] = ()


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, *, summary: str, query: type = Empty, body: type | None = None,
             answer: Any = None, errors: tuple[int, ...] = ()) -> Callable[[Any], Any]:
    """Declare a route of ``/api/v1`` (see the module docstring)."""
    def register(handler: Callable[[Call[Any, Any]], Awaitable[Any]]) -> Any:
        ENDPOINTS.append(Endpoint(method, path, handler, summary, query, body, answer, errors=errors))
        return handler
    return register


def parse(kind: type, raw: Any, where: str) -> Any:
    """``raw`` (query parameters as a dict, or a body as bytes) as ``kind``; :class:`BadRequest` naming the field."""
    try:
        if isinstance(raw, bytes):  # no body: {} (an error naming the field when the type requires one)
            return msgspec.convert(integral(msgspec.json.decode(raw or b"{}")), kind)
        return msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as exc:
        field, text = field_named(str(exc), where), f"{where}: {exc}"
        if field.startswith("[...]") and isinstance(raw, bytes):  # JSON no type takes (1e400): which field holds it
            field = _unreadable(raw) or where
            text = f"{field}: {exc}".replace(" - at `$[...]`", "")
        raise BadRequest(field, text) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(where, f"{where} is not JSON: {exc}") from None
    except RecursionError:  # valid JSON nested deeper than the decoder goes
        deep = (_too_deep(raw) if isinstance(raw, bytes) else None) or where
        raise BadRequest(deep, f"{deep}: nested too deeply (keep it under a few hundred levels)") from None


def _unreadable(raw: bytes) -> str | None:
    """The top-level field of a JSON object whose value alone cannot be decoded, or None."""
    try:
        fields = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    for name, value in fields.items():
        try:
            msgspec.json.decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return name
    return None


def _too_deep(raw: bytes, depth: int = 200) -> str | None:
    """The top-level field of a JSON object under which the nesting passes ``depth`` (a decoder cannot tell: it
    only raises), found by one scan that follows strings and brackets; None when it is not such an object."""
    text = raw.decode("utf-8", "replace")
    level, key, last, i = 0, None, "", 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            last, i = text[i + 1:end], end
        elif ch in "[{":
            level += 1
            if level > depth:
                return key
        elif ch in "]}":
            level -= 1
        elif ch == ":" and level == 1:
            key = last
        i += 1
    return None


#: body fields handed to a task as they are: ``1.0`` stays a float there
AS_GIVEN = frozenset({"args", "kwargs"})


def integral(value: Any) -> Any:
    """``380.0`` as ``380`` in a body (JSON has one number type: ``380.0`` is a valid integer for JSON Schema and
    for OpenAPI clients, which msgspec's strict decoding refuses), but never inside a task's ``args``/``kwargs``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: v if k in AS_GIVEN else integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def json_response(data: Any, status: int = 200) -> Response:
    return Response(_ENCODER.encode(data), status_code=status, media_type="application/json")


def route(eps: list[Endpoint]) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette handler of the endpoints of one path (one per method, so a 405 lists them all): parse, call,
    encode; errors are mapped by :mod:`qtasks_fast.web.errors`."""
    by_method = {ep.method: ep for ep in eps}

    async def handle(request: Request) -> Response:
        ep = by_method[request.method if request.method != "HEAD" else "GET"]
        query = parse(ep.query, dict(request.query_params), "query")
        body = parse(ep.body, await request.body(), "body") if ep.body is not None else None
        caller = Caller(who=who(request), read_only=request.app.state.read_only)
        result = await ep.handler(Call(request, dict(request.path_params), query, body, caller))
        return result if isinstance(result, Response) else json_response(result, ep.status)
    return handle


class TaskId(Convertor[str]):
    """A ``{uuid}`` path segment: any segment but the names of sibling routes (``/tasks/bulk`` answers 405 to a
    GET, not "'bulk' is not a uuid"); the handler checks it is a uuid (422 naming the field otherwise)."""

    regex = "(?!(?:bulk|counts)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("taskid", TaskId())


def paths() -> dict[str, list[Endpoint]]:
    """The declared endpoints by Starlette path (``{uuid}`` as ``{uuid:taskid}``), in declaration order."""
    out: dict[str, list[Endpoint]] = {}
    for ep in ENDPOINTS:
        out.setdefault(ep.path.replace("{uuid}", "{uuid:taskid}"), []).append(ep)
    return out
