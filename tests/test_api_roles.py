"""The route × role matrix over every ``/api`` route the app has, found in its URL map.

Anonymous callers get 401 everywhere but login; viewers read but get 403 on every mutation
(except signing out and changing their own password); admins are never refused. A route added
later is covered without editing this test.
"""

from __future__ import annotations

import re

import httpx
import pytest

from proxy.service import RunningService
from proxy.wiring import app_deps
from tests.conftest import StartGateway, signed_in
from web.api.guard import PUBLIC, SELF_SERVICE
from web.app import create_quart_app

VIEWER = ("vera", "a-long-enough-viewer-password")
ADMIN_ONLY_READS = {("GET", "/api/users")}
# Routes whose success would end the session the matrix runs on.
ENDS_SESSION = {("POST", "/api/auth/logout"), ("POST", "/api/auth/change-password")}


def api_routes(gateway: RunningService) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route under /api, placeholders filled with made-up values."""
    app = create_quart_app(app_deps(gateway.gateway))
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or getattr(rule, "websocket", False):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: f"no-such-{m.group(1)}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((method, path))
    return sorted(routes)


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    gateway = await start_gateway()
    async with signed_in(gateway) as admin:
        made = await admin.post(
            "/api/users", json={"username": VIEWER[0], "role": "viewer", "password": VIEWER[1]}
        )
        assert made.status_code == 201
    return gateway


async def test_every_api_route_is_guarded_by_role(dashboard: RunningService) -> None:
    routes = api_routes(dashboard)
    assert len(routes) >= 10
    template = {"/api/auth/login", "/api/users"}
    assert template <= {path for _, path in routes}
    async with httpx.AsyncClient(base_url=dashboard.base_url, timeout=30) as anonymous:
        for method, path in routes:
            answer = await anonymous.request(method, path, json={})
            if (method, path) in PUBLIC:
                assert answer.status_code != 401, (method, path)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
    async with signed_in(dashboard, *VIEWER) as viewer:
        for method, path in routes:
            if (method, path) in ENDS_SESSION | PUBLIC:
                continue
            answer = await viewer.request(method, path, json={})
            if method == "GET" and (method, path) not in ADMIN_ONLY_READS:
                assert answer.status_code not in (401, 403), (method, path, answer.text)
            elif (method, path) not in SELF_SERVICE:
                assert answer.status_code == 403, (method, path, answer.status_code)
                assert answer.json()["error"]["code"] == "admin_required"
    async with signed_in(dashboard) as admin:
        for method, path in routes:
            if (method, path) in ENDS_SESSION | PUBLIC:
                continue
            answer = await admin.request(method, path, json={})
            assert answer.status_code not in (401, 403, 500), (method, path, answer.text)
            assert answer.headers["content-type"].startswith(
                ("application/json", "text/csv", "application/x-ndjson")
            ), (method, path)
