"""The dashboard API's front door: first admin, sessions, roles, throttling, cookies, passwords."""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from pathlib import Path

import httpx
import pytest

from proxy.service import RunningService
from tests.conftest import (
    ADMIN_PASSWORD,
    StartGateway,
    initial_admin_password,
    on_each_backend,
    signed_in,
)

VIEWER_PASSWORD = "a-long-enough-viewer-password"


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    return await start_gateway()


async def add_viewer(admin: httpx.AsyncClient, name: str = "vera") -> None:
    made = await admin.post(
        "/api/users", json={"username": name, "role": "viewer", "password": VIEWER_PASSWORD}
    )
    assert made.status_code == 201, made.text
    assert "password" not in made.json()


@on_each_backend
async def test_first_start_creates_an_admin_with_a_private_one_time_password(
    dashboard: RunningService,
) -> None:
    database = Path(dashboard.gateway.config.server.database)
    secret = database.parent / "llm-proxy-initial-admin-password"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    password = initial_admin_password(dashboard)
    assert len(password) >= 20
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        login = await client.post(
            "/api/auth/login", json={"username": "admin", "password": password}
        )
        assert login.status_code == 200
        body = login.json()
        assert body["user"] == {
            "username": "admin",
            "display_name": "Administrator",
            "role": "admin",
            "must_change_password": True,
        }
        bearer = {"authorization": f"Bearer {body['token']}"}
        # Everything but status, change-password and logout waits for the new password.
        blocked = await client.get("/api/users", headers=bearer)
        assert blocked.status_code == 403
        assert blocked.json()["error"]["code"] == "password_change_required"
        status = await client.get("/api/auth/status", headers=bearer)
        assert status.json()["session"]["must_change_password"] is True
        weak = await client.post(
            "/api/auth/change-password",
            json={"current_password": password, "new_password": "short"},
            headers=bearer,
        )
        assert weak.status_code == 400
        assert weak.json()["error"]["code"] == "weak_password"
        changed = await client.post(
            "/api/auth/change-password",
            json={"current_password": password, "new_password": ADMIN_PASSWORD},
            headers=bearer,
        )
        assert changed.status_code == 200
        assert (await client.get("/api/users", headers=bearer)).status_code == 200


async def test_everything_under_api_needs_a_session(dashboard: RunningService) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        for method, path in [
            ("GET", "/api/users"),
            ("POST", "/api/users"),
            ("GET", "/api/auth/status"),
            ("POST", "/api/auth/logout"),
            ("GET", "/api/no-such-route"),
            ("DELETE", "/api/users/admin"),
        ]:
            answer = await client.request(method, path)
            assert answer.status_code == 401, (method, path)
            assert answer.json()["error"]["type"] == "authentication_error"
        forged = await client.get("/api/users", headers={"authorization": "Bearer made-up"})
        assert forged.status_code == 401


async def test_wrong_passwords_are_throttled_per_username(dashboard: RunningService) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        for _ in range(5):
            wrong = await client.post(
                "/api/auth/login", json={"username": "admin", "password": "not it at all"}
            )
            assert wrong.status_code == 401
            assert wrong.json()["error"]["code"] == "invalid_credentials"
        throttled = await client.post(
            "/api/auth/login",
            json={"username": "admin", "password": initial_admin_password(dashboard)},
        )
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert throttled.json()["error"]["code"] == "login_throttled"


async def test_unknown_users_and_wrong_passwords_get_the_same_answer(
    dashboard: RunningService,
) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        unknown = await client.post("/api/auth/login", json={"username": "nobody", "password": "x"})
        wrong = await client.post("/api/auth/login", json={"username": "admin", "password": "x"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json() == wrong.json()


async def test_bad_login_bodies_are_400(dashboard: RunningService) -> None:
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        for content in (b"", b"{", b'{"username": "admin"}', b'{"username": 1, "password": "x"}'):
            answer = await client.post(
                "/api/auth/login", content=content, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 400, content
            assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_viewers_read_but_cannot_change(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin)
        async with signed_in(dashboard, "vera", VIEWER_PASSWORD) as viewer:
            status = await viewer.get("/api/auth/status")
            assert status.json()["session"]["role"] == "viewer"
            refused = await viewer.post("/api/users", json={"username": "x", "role": "admin"})
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "admin_required"
            assert (await viewer.delete("/api/users/admin")).status_code == 403
            assert (await viewer.get("/api/users")).status_code == 403
            # Their own password is theirs to change.
            changed = await viewer.post(
                "/api/auth/change-password",
                json={"current_password": VIEWER_PASSWORD, "new_password": VIEWER_PASSWORD + "!"},
            )
            assert changed.status_code == 200


async def test_the_cookie_is_strict_and_cookie_mutations_need_our_origin(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin, "cora")
    async with httpx.AsyncClient(base_url=dashboard.base_url) as browser:
        login = await browser.post(
            "/api/auth/login", json={"username": "cora", "password": VIEWER_PASSWORD}
        )
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/" in cookie
        assert "secure" not in cookie  # plain http here; https requests get Secure
        assert (await browser.get("/api/auth/status")).status_code == 200  # reads: no Origin
        new_password = {"current_password": VIEWER_PASSWORD, "new_password": "x" * 20}
        foreign = await browser.post(
            "/api/auth/change-password",
            json=new_password,
            headers={"origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        assert foreign.json()["error"]["code"] == "bad_origin"
        missing = await browser.post("/api/auth/change-password", json=new_password)
        assert missing.status_code == 403
        ours = await browser.post(
            "/api/auth/change-password", json=new_password, headers={"origin": dashboard.base_url}
        )
        assert ours.status_code == 200


@on_each_backend
async def test_changing_a_password_ends_the_users_other_sessions(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin, "otto")
    async with (
        signed_in(dashboard, "otto", VIEWER_PASSWORD) as first,
        signed_in(dashboard, "otto", VIEWER_PASSWORD) as second,
    ):
        changed = await first.post(
            "/api/auth/change-password",
            json={"current_password": VIEWER_PASSWORD, "new_password": "otto's brand new password"},
        )
        assert changed.json()["other_sessions_ended"] == 1
        assert (await first.get("/api/auth/status")).status_code == 200
        assert (await second.get("/api/auth/status")).status_code == 401


async def test_logout_ends_the_session(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        assert (await admin.post("/api/auth/logout")).status_code == 200
        assert (await admin.get("/api/auth/status")).status_code == 401


@on_each_backend
async def test_users_are_managed_by_admins(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        made = await admin.post("/api/users", json={"username": "newbie", "role": "viewer"})
        assert made.status_code == 201
        one_time = made.json()["password"]
        assert made.json()["must_change_password"] is True
        duplicate = await admin.post("/api/users", json={"username": "NEWBIE"})
        assert duplicate.status_code == 409
        listed = (await admin.get("/api/users")).json()["data"]
        assert {user["username"] for user in listed} == {"admin", "newbie"}
        assert all("password_hash" not in user for user in listed)
        promoted = await admin.put("/api/users/newbie", json={"role": "admin"})
        assert promoted.json()["role"] == "admin"
        assert (await admin.delete("/api/users/admin")).status_code == 400  # not yourself
        assert (await admin.delete("/api/users/newbie")).status_code == 200
        assert (await admin.delete("/api/users/newbie")).status_code == 404
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        gone = await client.post(
            "/api/auth/login", json={"username": "newbie", "password": one_time}
        )
        assert gone.status_code == 401


async def test_behind_a_trusted_tls_proxy_the_dashboard_sees_https_and_the_real_client(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"server": {"trusted_proxy_hops": 1}})
    async with signed_in(gateway) as admin:
        await add_viewer(admin, "pat")
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "gw.example"}
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=forwarded) as browser:
        login = await browser.post(
            "/api/auth/login", json={"username": "pat", "password": VIEWER_PASSWORD}
        )
        assert "secure" in login.headers["set-cookie"].lower()
        browser.cookies.set("llm_proxy_session", login.json()["token"])
        changed = await browser.post(
            "/api/auth/change-password",
            json={"current_password": VIEWER_PASSWORD, "new_password": "pat's new long password"},
            headers={"origin": "https://gw.example"},
        )
        assert changed.status_code == 200, changed.text
        # Throttling counts the address the proxy names, not the proxy's own.
        for _ in range(20):
            await browser.post(
                "/api/auth/login",
                json={"username": "nobody", "password": "x"},
                headers={"x-forwarded-for": "203.0.113.7"},
            )
        other = await browser.post(
            "/api/auth/login",
            json={"username": "admin", "password": ADMIN_PASSWORD},
            headers={"x-forwarded-for": "203.0.113.8"},
        )
        assert other.status_code == 200


async def test_forwarded_headers_are_ignored_unless_trusted(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin, "quin")
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "gw.example"}
    async with httpx.AsyncClient(base_url=dashboard.base_url, headers=forwarded) as browser:
        login = await browser.post(
            "/api/auth/login", json={"username": "quin", "password": VIEWER_PASSWORD}
        )
        assert "secure" not in login.headers["set-cookie"].lower()
        spoofed = await browser.post(
            "/api/auth/change-password",
            json={"current_password": VIEWER_PASSWORD, "new_password": "x" * 20},
            headers={"origin": "https://gw.example"},
        )
        assert spoofed.status_code == 403
        assert spoofed.json()["error"]["code"] == "bad_origin"


@on_each_backend
async def test_a_lock_holds_for_every_spelling_of_the_name(dashboard: RunningService) -> None:
    # "René" typed on one keyboard is NFC (é), on another NFD (e + combining acute): one user,
    # one lock, whichever way the guesses and the next try spell it.
    composed, decomposed = "René", unicodedata.normalize("NFD", "RENÉ")
    assert composed.casefold() != decomposed.casefold()
    async with signed_in(dashboard) as admin:
        made = await admin.post(
            "/api/users", json={"username": composed, "password": VIEWER_PASSWORD}
        )
        assert made.status_code == 201, made.text
    async with httpx.AsyncClient(base_url=dashboard.base_url) as client:
        for _ in range(5):
            wrong = await client.post(
                "/api/auth/login", json={"username": composed, "password": "not it at all"}
            )
            assert wrong.status_code == 401
        other_spelling = await client.post(
            "/api/auth/login", json={"username": decomposed, "password": VIEWER_PASSWORD}
        )
    assert other_spelling.status_code == 429, other_spelling.text
    assert other_spelling.json()["error"]["code"] == "login_throttled"


async def test_an_admin_cannot_delete_themself_by_another_spelling(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin:
        made = await admin.post(
            "/api/users", json={"username": "Jürgen", "role": "admin", "password": VIEWER_PASSWORD}
        )
        assert made.status_code == 201, made.text
    async with signed_in(dashboard, "Jürgen", VIEWER_PASSWORD) as jurgen:
        for spelling in (unicodedata.normalize("NFD", "jürgen"), "JÜRGEN"):
            refused = await jurgen.delete(f"/api/users/{spelling}")
            assert refused.status_code == 400, (spelling, refused.text)
            assert refused.json()["error"]["code"] == "cannot_delete_self"


# -- cross-site requests and body types ------------------------------------------------------------


async def test_a_cross_site_form_cannot_sign_a_browser_in(dashboard: RunningService) -> None:
    # Login CSRF: another site's page posts a form (text/plain, no preflight) with the
    # attacker's credentials, and the victim's browser would get the attacker's session.
    async with signed_in(dashboard) as admin:
        await add_viewer(admin, "mallory")
    credentials = f'{{"username": "mallory", "password": "{VIEWER_PASSWORD}"}}'
    async with httpx.AsyncClient(base_url=dashboard.base_url) as browser:
        browser.cookies.set("llm_proxy_session", "the-victims-own-session")
        form = await browser.post(
            "/api/auth/login",
            content=credentials,
            headers={"content-type": "text/plain", "origin": "https://evil.example"},
        )
        as_json = await browser.post(
            "/api/auth/login",
            content=credentials,
            headers={"content-type": "application/json", "origin": "https://evil.example"},
        )
        null_origin = await browser.post(  # what a sandboxed frame or a data: URL sends
            "/api/auth/login",
            content=credentials,
            headers={"content-type": "application/json", "origin": "null"},
        )
        ours = await browser.post(
            "/api/auth/login",
            content=credentials,
            headers={"content-type": "application/json", "origin": dashboard.base_url},
        )
    for refused in (form, as_json, null_origin):
        assert refused.status_code in (403, 415), refused.text
        assert "set-cookie" not in refused.headers
    assert form.status_code == 415
    assert form.json()["error"]["code"] == "unsupported_media_type"
    assert as_json.status_code == null_origin.status_code == 403
    assert as_json.json()["error"]["code"] == "bad_origin"
    assert ours.status_code == 200, ours.text
    # Scripts and the CLI (no Origin) sign in as before, with or without a cookie jar: the
    # other tests do.


async def test_every_api_body_must_be_json(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        user = {"username": "tina", "role": "viewer", "password": VIEWER_PASSWORD}
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            answer = await admin.post(
                "/api/users", content=json.dumps(user).encode(), headers=headers
            )
            assert answer.status_code == 415, (content_type, answer.text)
            error = answer.json()["error"]
            assert error["code"] == "unsupported_media_type"
            assert error["type"] == "invalid_request_error"
            assert "application/json" in error["message"]
        latin1 = await admin.post(
            "/api/users",
            content=json.dumps(user).encode(),
            headers={"content-type": "application/json; charset=latin-1"},
        )
        assert latin1.status_code == 415
        # The connection is still good after a refusal, and JSON goes through.
        utf8 = await admin.post(
            "/api/users",
            content=json.dumps(user).encode(),
            headers={"content-type": "application/json; charset=UTF-8"},
        )
        assert utf8.status_code == 201, utf8.text
        # A request without a body needs no type.
        assert (await admin.post("/api/auth/logout")).status_code == 200
