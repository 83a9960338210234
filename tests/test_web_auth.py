"""Security of the WebView/REST app (issue 13): authentication always on (bearer or signed-in session),
read-only refuses every mutation, a browser's mutation needs its CSRF token, a strict CSP on every answer,
no token in any answer."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from apps.web_app import build
from apps.webkit import BEARER, TOKEN, client, sign_in

from qtasks_fast import QueueTasks
from qtasks_fast.web import create_app

U = "00000000-0000-0000-0000-000000000001"
READS = ["/api/v1/tasks", "/api/v1/tasks/counts", f"/api/v1/tasks/{U}", f"/api/v1/tasks/{U}/detail",
         f"/api/v1/tasks/{U}/logs", "/api/v1/queues", "/api/v1/dead-letters", "/api/v1/workers", "/api/v1/schedules",
         "/api/v1/throughput", "/api/v1/audit", "/api/v1/events?follow=false", "/metrics"]
#: every mutation, with a body that would succeed (or 404 on the unknown uuid) when allowed
WRITES = [("/api/v1/tasks", {"name": "add", "args": [1, 2]}), (f"/api/v1/tasks/{U}/cancel", {}),
          (f"/api/v1/tasks/{U}/restart", None),
          ("/api/v1/tasks/bulk", {"action": "cancel", "confirm": 1, "uuids": [U]}),
          ("/api/v1/queues/default/purge", None), ("/api/v1/dead-letters/requeue", {"ids": ["1-0"]}),
          ("/api/v1/dead-letters/purge", {"ids": ["1-0"]})]


@pytest.fixture
def app(app_name: str) -> QueueTasks:
    return build(app_name, "memory://")


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                                     {"authorization": f"Bearer {TOKEN}x"}], ids=["none", "wrong", "basic", "longer"])
async def test_without_the_token_every_route_but_the_public_ones_is_401(app: QueueTasks,
                                                                        headers: dict[str, str]) -> None:
    async with client(app, bearer=False) as c:
        for path in READS:
            r = await c.get(path, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
        for path, body in WRITES:
            assert (await c.post(path, json=body, headers=headers)).status_code == 401, path
        assert (await c.get("/", headers={**headers, "accept": "text/html"})).status_code == 303  # to sign in
        for public in ("/health", "/api/v1/openapi.json", "/static/app.css", "/signin"):
            assert (await c.get(public, headers=headers)).status_code in (200, 503), public


async def test_wrong_tokens_are_rate_limited_per_client_address(app: QueueTasks) -> None:
    """After BURST wrong tokens an address gets 429 with Retry-After, even for the right token (no oracle), on
    the API and the sign-in form alike; another address is not slowed."""
    from qtasks_fast.service.throttle import BURST

    web = create_app(app, token=TOKEN)

    def from_(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=web, client=(address, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async with from_("10.0.0.1") as guesser, from_("10.0.0.2") as other:
        for i in range(BURST):
            assert (await guesser.get("/api/v1/workers", headers={"authorization": f"Bearer guess{i}"})
                    ).status_code == 401
        for headers in ({"authorization": "Bearer again"}, BEARER):
            r = await guesser.get("/api/v1/workers", headers=headers)
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and TOKEN not in r.text
        signin = await guesser.post("/signin", data={"token": TOKEN, "next": "/"})
        assert signin.status_code == 429 and "try again in" in signin.text and "retry-after" in signin.headers
        assert (await other.get("/api/v1/workers", headers=BEARER)).status_code == 200
        for i in range(BURST):
            assert (await other.post("/signin", data={"token": f"guess{i}", "next": "/"})).status_code == 401
        assert (await other.post("/signin", data={"token": "guess", "next": "/"})).status_code == 429


async def test_read_only_refuses_every_mutation_with_403_and_serves_reads(app: QueueTasks) -> None:
    async with client(app, read_only=True) as c:
        for path, body in WRITES:
            r = await c.post(path, json=body)
            assert r.status_code == 403 and "read-only" in r.json()["error"], (path, r.text)
        for path in READS:
            assert (await c.get(path)).status_code in (200, 404), path
        assert (await c.get("/api/v1/tasks/counts")).json()["new"] == 0  # the submit did not happen
        dry = await c.post("/api/v1/tasks/bulk/count", json={"action": "cancel"})
        assert dry.status_code == 200  # counting changes nothing


async def test_a_browser_signs_in_and_its_mutations_need_the_csrf_token(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        wrong = await c.post("/signin", data={"token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "qtasks_session" not in wrong.headers.get("set-cookie", "")
        r = await c.post("/signin", data={"token": TOKEN})
        attrs = r.headers["set-cookie"].lower()
        assert "httponly" in attrs and "samesite=strict" in attrs and "path=/" in attrs
        assert "secure" not in attrs  # plain http (a test server); over https it is set
        csrf = await sign_in(c)
        assert (await c.get("/api/v1/tasks")).status_code == 200  # reads with the cookie alone
        body = {"name": "add", "args": [1, 2]}
        assert (await c.post("/api/v1/tasks", json=body)).status_code == 403
        assert (await c.post("/api/v1/tasks", json=body, headers={"x-csrf-token": "0" * 64})).status_code == 403
        ok = await c.post("/api/v1/tasks", json=body, headers={"x-csrf-token": csrf})
        assert ok.status_code == 200, ok.text
        audit = (await c.get("/api/v1/audit")).json()
        assert audit[0]["action"] == "submit" and audit[0]["who"].startswith("web:")
        assert (await c.post("/signout", data={})).status_code == 403  # a form without its field
        kept = {"cookie": f"qtasks_session={c.cookies['qtasks_session']}"}  # a copy (another tab's, a stolen one)
        out = await c.post("/signout", data={"csrf_token": csrf})
        assert out.status_code == 303
        assert (await c.get("/api/v1/tasks")).status_code == 401  # the cookie is gone
        assert (await c.get("/api/v1/tasks", headers=kept)).status_code == 401  # and that session has ended


async def test_a_session_of_another_token_is_refused(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        await sign_in(c)
        other = create_app(app, token="another-token-entirely")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://testserver",
                                     cookies=c.cookies) as d:
            assert (await d.get("/api/v1/tasks")).status_code == 401


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", ""])
async def test_sign_in_never_redirects_to_another_site(app: QueueTasks, target: str) -> None:
    async with client(app, bearer=False) as c:
        r = await c.post("/signin", data={"token": TOKEN, "next": target})
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_every_answer_has_a_strict_csp_and_no_template_has_inline_script(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        for path in ("/signin", "/health", "/api/v1/openapi.json", "/static/app.css", "/api/v1/tasks"):
            csp = (await c.get(path)).headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    templates = Path(__file__).parents[1] / "qtasks_fast" / "web" / "templates"
    for page in templates.glob("*.html"):
        text = page.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), page  # only <script src=...>
        assert not re.search(r"\son[a-z]+=", text) and "style=" not in text, page


def mounted(app: QueueTasks) -> httpx.AsyncClient:
    """``create_app`` mounted at /tasks inside a service of the user's (Starlette; FastAPI's mount is the same)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/tasks", app=create_app(app, token=TOKEN))])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://testserver")


@pytest.mark.parametrize("how", ["root_path", "mounted"])
async def test_mounted_under_a_root_path_everything_moves_there(app: QueueTasks, how: str) -> None:
    async with (client(app, root_path="/tasks", bearer=False) if how == "root_path" else mounted(app)) as c:
        assert (await c.get("/api/v1/tasks", headers=BEARER)).status_code == 404
        assert (await c.get("/tasks/api/v1/tasks", headers=BEARER)).status_code == 200
        page = await c.get("/tasks/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/tasks/signin")
        r = await c.post("/tasks/signin", data={"token": TOKEN, "next": "/tasks/"})
        assert r.headers["location"] == "/tasks/" and "path=/tasks" in r.headers["set-cookie"].lower()
        html = (await c.get("/tasks/", headers={"accept": "text/html"})).text
        assert 'href="/tasks/static/app.css"' in html
        doc = (await c.get("/tasks/api/v1/openapi.json")).json()
        assert doc["servers"] == [{"url": "/tasks/api/v1"}]


async def test_the_token_is_in_no_answer(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        await sign_in(c)
        bodies = [(await c.get(p, headers={"accept": "text/html"})).text for p in ("/", "/signin")]
        bodies += [(await c.get(p, headers=BEARER)).text for p in READS]
        bodies += [(await c.post("/signin", data={"token": TOKEN + "x"})).text]
    assert all(TOKEN not in b for b in bodies)


def test_create_app_refuses_to_run_without_a_token(app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTASKS_WEB_TOKEN", raising=False)
    with pytest.raises(ValueError, match="QTASKS_WEB_TOKEN"):
        create_app(app)
    monkeypatch.setenv("QTASKS_WEB_TOKEN", "from-the-env")
    assert create_app(app) is not None


def test_a_limited_address_earns_one_try_back_per_second() -> None:
    from qtasks_fast.service.throttle import FailureLimiter

    now = [100.0]
    limiter = FailureLimiter(burst=3, rate=1.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
    assert limiter.retry_after("a") == 1 and limiter.retry_after("b") == 0
    now[0] += 1.0
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 1
