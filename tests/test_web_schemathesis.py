"""A property-based run of the OpenAPI document against the app (issue 13): schemathesis generates valid and
invalid requests for every operation of ``/api/v1/openapi.json`` and checks that no answer is a 500, that
every status, content type and body is one the document declares. Bounded: a few examples per operation."""

from __future__ import annotations

import schemathesis
from apps.web_app import build
from apps.webkit import BEARER
from hypothesis import HealthCheck, settings

from qtasks_fast.web import create_app

app = build("schemathesis", "memory://")
web = create_app(app, token=BEARER["authorization"].split()[1])
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", web).exclude(path="/events")  # an endless stream


@schema.auth()
class Bearer:
    """The token, set through schemathesis so that its auth checks can also send none or a wrong one."""

    def get(self, case: schemathesis.Case, context: object) -> str:
        return BEARER["authorization"].split()[1]

    def set(self, case: schemathesis.Case, data: str, context: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate()
