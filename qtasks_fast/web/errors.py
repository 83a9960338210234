"""One mapping of failures to HTTP answers: the service's typed errors to 404/422/403/503, anything else to a
500 that says only "internal error" (the traceback goes to the server log, never to the client)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from qtasks_fast.log import get_logger
from qtasks_fast.service import BadRequest, NotFound, ReadOnly, ServiceError, Unavailable
from qtasks_fast.web.endpoints import json_response

log = get_logger("web")
STATUS = {NotFound: 404, BadRequest: 422, ReadOnly: 403, Unavailable: 503}


def answer(exc: ServiceError) -> Response:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    body: dict[str, object] = {"error": str(exc)}
    if isinstance(exc, BadRequest):
        body["field"] = exc.field
    if isinstance(exc, NotFound) and exc.registered is not None:
        body["registered"] = exc.registered
    return json_response(body, status)


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return answer(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route 404, method 405 with its ``Allow``) as JSON like every other."""
    assert isinstance(exc, HTTPException)
    response = json_response({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path)
    return json_response({"error": "internal error: the server log has the details"}, 500)
