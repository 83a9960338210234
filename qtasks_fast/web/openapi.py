"""The OpenAPI 3.1 document of ``/api/v1``, built from the declared endpoints' msgspec types (what the routes
parse and answer), so it cannot drift from the code. Served at ``/api/v1/openapi.json``."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from qtasks_fast.web.endpoints import ENDPOINTS, Empty, Endpoint

REF = "#/components/schemas/{name}"


class Error(msgspec.Struct, kw_only=True):
    """Every error answer: what went wrong and what to do; ``field`` names a bad input (422), ``registered``
    lists the task names the app knows (404 on submit)."""

    error: str
    field: str | None = None
    registered: list[str] | None = None


ERRORS = {401: "not authenticated", 403: "read-only server, or a browser mutation without its CSRF token",
          404: "no such task, queue or task name", 422: "a malformed parameter or body (field names it)",
          429: "too many wrong tokens from this address: retry after the Retry-After seconds",
          503: "the broker is unreachable or lacks the feature"}


def _parameters(ep: Endpoint, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    out = [{"name": p, "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"} if p == "uuid" else {"type": "string"}}
           for p in re.findall(r"{(\w+)}", ep.path)]
    if ep.query is not Empty:
        (ref,), defs = msgspec.json.schema_components([ep.query], ref_template=REF)
        schema = defs[ref["$ref"].rsplit("/", 1)[1]]
        for name, prop in schema.get("properties", {}).items():
            out.append({"name": name, "in": "query", "required": name in schema.get("required", ()),
                        "schema": prop})
        schemas.update({k: v for k, v in defs.items() if k != ref["$ref"].rsplit("/", 1)[1]})
    return out


def _has_required(kind: type) -> bool:
    """Whether a body type has a field without default (then the body itself is required)."""
    info = msgspec.inspect.type_info(kind)
    return any(f.required for f in getattr(info, "fields", ()))


def _bound_priority(schema: dict[str, Any], levels: int) -> None:
    """A request body's ``priority`` declared as the app's levels (``0..levels-1``): the server answers 422
    outside them (``service.guard.checked_priority``), so the document must not call those values valid."""
    prop = schema.get("properties", {}).get("priority")
    if prop is None:
        return
    for alt in prop.get("anyOf", [prop]):
        if alt.get("type") == "integer":
            alt.update(minimum=0, maximum=levels - 1)


def document(title: str = "qtasks_fast REST API", version: str = "1", levels: int | None = None) -> dict[str, Any]:
    """The whole document (paths relative to the server's ``/api/v1``); ``levels``: the app's priority levels,
    the range a submitted priority must be in."""
    types: list[Any] = [Error]
    for ep in ENDPOINTS:
        types += [t for t in (ep.body, ep.answer) if t is not None]
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    by_type = dict(zip(map(id, types), refs))
    if levels is not None:
        for ep in ENDPOINTS:
            if ep.body is not None:
                _bound_priority(schemas[by_type[id(ep.body)]["$ref"].rsplit("/", 1)[1]], levels)
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        op: dict[str, Any] = {"summary": ep.summary, "operationId": ep.handler.__name__,
                              "parameters": _parameters(ep, schemas), "responses": {}}
        if ep.body is not None:
            op["requestBody"] = {"required": _has_required(ep.body),
                                 "content": {"application/json": {"schema": by_type[id(ep.body)]}}}
        op["responses"][str(ep.status)] = {"description": "OK",
                                           "content": {"application/json": {"schema": by_type[id(ep.answer)]}}}
        for code in sorted({401, 422, 429, 503, *ep.errors}):
            op["responses"][str(code)] = {"description": ERRORS[code],
                                          "content": {"application/json": {"schema": by_type[id(Error)]}}}
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {"openapi": "3.1.0", "info": {"title": title, "version": version},
            "servers": [{"url": "/api/v1"}], "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}]}
