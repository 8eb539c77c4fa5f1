"""Early answers keep keep-alive connections usable (issue 13, item 13).

An answer given before the request body has arrived (the dashboard guard's 401/403, Quart's
404/405/413, the static files, ``/v1``'s 413) used to leave the connection neither serving the
next request nor closed: a script stalled for its whole timeout after any refused call. The
gateway now reads a small body to its end before answering, so the connection stays usable;
past a bound it answers with ``Connection: close`` and closes.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, initial_admin_password
from tests.raw_http import RawConnection, head
from web.api.common import MAX_API_BODY
from web.early_answers import DRAIN_WINDOW_S

BODY = b'{"name": "a client", "description": "sent after the request head"}'
# Past the body the gateway drains before an early answer, below server.max_body_bytes.
LARGE = 1_000_000
# How long the body is held back: long enough for an answer given without it to arrive first.
HOLD_BACK_S = 0.5


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    return await start_gateway({"server": {"max_body_bytes": 500_000}})


async def first_login_token(gateway: RunningService) -> str:
    """A session that must change its password first: every mutation is 403 for it."""
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        login = await client.post(
            "/api/auth/login",
            json={"username": "admin", "password": initial_admin_password(gateway)},
        )
    assert login.status_code == 200, login.text
    return str(login.json()["token"])


async def early_answer_then_next(
    gateway: RunningService, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, int]:
    """Send a request head, its body only later with a second request behind it; return both
    statuses. Fails with ``TooSlowError`` when the second one is never answered."""
    connection = await RawConnection.open(gateway.base_url)
    headers = {"content-type": "application/json", **(headers or {})}  # else /api says 415
    await connection.send(head(method, path, length=len(BODY), headers=headers))
    # Before the fix the whole early answer came here, without the body; now it waits for it.
    try:
        first = await connection.response(timeout=HOLD_BACK_S)
    except trio.TooSlowError:
        first = None
    # A client that sends its body a little later than the server expected (client and server
    # share this test's event loop: without a pause the body would always be first).
    await trio.sleep(0.05)
    await connection.send(BODY + head("GET", "/healthz"))
    if first is None:
        first = await connection.response(timeout=5)
    second = await connection.response(timeout=5)
    assert first is not None, "the server closed the connection"
    assert second is not None, "the server closed the connection"
    assert not first.closes, first.headers
    await connection.aclose()
    return first.status, second.status


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/clients", 401),  # the guard: no session
        ("POST", "/nowhere", 404),  # Quart: unknown path
        ("PUT", "/healthz", 405),  # Quart: wrong method
        ("GET", "/", 200),  # the dashboard page, with a body it never reads
        ("GET", "/static/style.css", 200),  # a static file, likewise
    ],
)
async def test_an_early_answer_leaves_the_connection_serving(
    dashboard: RunningService, method: str, path: str, status: int
) -> None:
    assert await early_answer_then_next(dashboard, method, path) == (status, 200)


async def test_the_guards_403_leaves_the_connection_serving(dashboard: RunningService) -> None:
    token = await first_login_token(dashboard)
    bearer = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    assert await early_answer_then_next(dashboard, "POST", "/api/clients", bearer) == (403, 200)


def refused_then_next(base_url: str, rounds: int) -> list[str]:
    """The review's script, in a thread of its own: a refused call, then the next one on the
    same pooled connection; what went wrong in each round."""
    problems: list[str] = []
    with httpx.Client(base_url=base_url, timeout=3) as client:
        for n in range(rounds):
            try:
                refused = client.post("/api/clients", json={"name": "x"})
                health = client.get("/healthz")
            except httpx.HTTPError as exc:
                problems.append(f"round {n}: {exc!r}")
                continue
            if refused.status_code != 401 or "close" in refused.headers.get("connection", ""):
                problems.append(f"round {n}: {refused.status_code} {refused.headers}")
            if health.status_code != 200:
                problems.append(f"round {n}: /healthz {health.status_code}")
    return problems


async def test_refused_calls_do_not_stall_a_keep_alive_client(dashboard: RunningService) -> None:
    assert await trio.to_thread.run_sync(refused_then_next, dashboard.base_url, 15) == []


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [
        ("/nowhere", LARGE, 404),  # too much to read just to throw it away
        ("/api/auth/login", 600_000, 413),  # over server.max_body_bytes: Quart's 413
        ("/v1/chat/completions", 600_000, 413),  # over server.max_body_bytes: /v1's 413
    ],
)
async def test_an_early_answer_before_a_large_body_closes_the_connection(
    dashboard: RunningService, path: str, length: int, status: int
) -> None:
    connection = await RawConnection.open(dashboard.base_url)
    await connection.send(
        head("POST", path, length=length, headers={"content-type": "application/json"})
    )
    answer = await connection.response(timeout=5)
    assert answer is not None
    assert answer.status == status
    assert answer.closes, answer.headers
    # ... and means it, whether the body ever comes or not.
    await connection.send(b"x" * 1000)
    assert await connection.closed_by_server(timeout=5)


async def test_a_dashboard_body_past_its_own_limit_is_refused_as_it_arrives(
    start_gateway: StartGateway,
) -> None:
    # /v1 takes 20 MB bodies; the dashboard API, 1 MB, refused before a byte more is read.
    gateway = await start_gateway()
    connection = await RawConnection.open(gateway.base_url)
    await connection.send(
        head(
            "POST",
            "/api/auth/login",
            length=2 * MAX_API_BODY,
            headers={"content-type": "application/json"},
        )
    )
    answer = await connection.response(timeout=5)
    assert answer is not None
    assert answer.status == 413
    assert answer.closes, answer.headers


async def test_a_body_that_never_comes_delays_an_early_answer_boundedly(
    dashboard: RunningService,
) -> None:
    connection = await RawConnection.open(dashboard.base_url)
    await connection.send(head("POST", "/nowhere", length=100))
    sent = trio.current_time()
    answer = await connection.response(timeout=10)
    assert answer is not None
    assert answer.status == 404
    assert answer.closes, answer.headers
    assert trio.current_time() - sent >= DRAIN_WINDOW_S - 0.1  # it waited for the body ...
    assert await connection.closed_by_server(timeout=5)  # ... and gave up on the connection
