"""The WebView and REST API (issue 13): ``create_app(app, token=..., read_only=..., root_path=...)`` returns one
ASGI app serving the HTML pages, ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``), ``/api/v1/events`` (SSE),
``/health`` and ``/metrics``; ``qtasks-fast -A mod:app web`` serves it with uvicorn.

Why Starlette and not FastAPI: the project's types are msgspec structs, and the routes are declared once with
them (:mod:`qtasks_fast.web.endpoints`), from which the OpenAPI document is built; FastAPI would need a second,
pydantic, copy of every type and pull in more than the server uses.
"""

from __future__ import annotations

from qtasks_fast.web.app import create_app

__all__ = ["create_app"]
