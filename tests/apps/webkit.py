"""Helpers of the WebView/REST tests: an in-process client of ``create_app`` (httpx over ASGI), bearer or
signed in as a browser."""

from __future__ import annotations

import re
from typing import Any

import httpx

from qtasks_fast.web import create_app

TOKEN = "test-token-0123456789abcdef"
BEARER = {"authorization": f"Bearer {TOKEN}"}


def client(app: Any, *, read_only: bool = False, root_path: str = "", bearer: bool = True) -> httpx.AsyncClient:
    web = create_app(app, token=TOKEN, read_only=read_only, root_path=root_path)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url="http://testserver",
                             headers=BEARER if bearer else None)


async def sign_in(c: httpx.AsyncClient, root: str = "") -> str:
    """Sign ``c`` in through the form (it keeps the cookie); the page's CSRF token."""
    r = await c.post(f"{root}/signin", data={"token": TOKEN, "next": f"{root}/"})
    assert r.status_code == 303, r.text
    page = await c.get(f"{root}/", headers={"accept": "text/html"})
    assert page.status_code == 200, page.text
    found = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert found, page.text
    return found.group(1)
