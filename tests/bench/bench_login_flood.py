"""A real admin's sign-in during a flood of guesses, with the server's real argon2 parameters.

A ``llm-proxy serve`` child process (one trusted proxy hop, so each request names its address in
X-Forwarded-For) gets 200 concurrent wrong guesses; once ten of them have been answered the admin
signs in from the desk they used before. Two floods, each on a fresh server:

- one user: 200 guesses at ``admin`` from one address (the outside review's case: 51 s);
- spread: 200 guesses at 200 usernames from 200 addresses (what the hashing queue bound is for).

Printed: the admin's status and seconds, the burst's answers by status and its duration.
Run: `.venv/bin/python -m tests.bench.bench_login_flood`.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

from tests.bench.bench_throughput import _stop
from tests.bench.table import Figure, machine, render

GUESSES = 200
ADMIN_PASSWORD = "the-admins-real-long-password"
DESK = {"x-forwarded-for": "198.51.100.2"}
START_TIMEOUT_S = 30.0
_LISTENING = re.compile(r"listening on (http://\S+)")


@contextmanager
def server() -> Iterator[tuple[str, str]]:
    """A fresh gateway; yields its URL and the admin's one-time password."""
    with tempfile.TemporaryDirectory(prefix="bench-login-") as name:
        directory = Path(name)
        config = directory / "gateway.toml"
        config.write_text(
            '[server]\nhost = "127.0.0.1"\ntrusted_proxy_hops = 1\n'
            "[providers.ollama]\nenabled = false\n"
        )
        command = [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config)]
        command += ["--port", "0", "--database", str(directory / "gateway.db")]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, cwd=directory)
        try:
            assert process.stderr is not None
            deadline = time.monotonic() + START_TIMEOUT_S
            url = ""
            while not url and time.monotonic() < deadline:
                line = process.stderr.readline().decode(errors="replace")
                if not line:
                    break
                if match := _LISTENING.search(line):
                    url = match.group(1)
            if not url:
                raise RuntimeError("the gateway did not start")
            # Its later lines are read and dropped, so the pipe never fills and blocks it.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            secret = directory / "llm-proxy-initial-admin-password"
            yield url, secret.read_text().strip()
        finally:
            _stop(process)
            if process.stderr is not None:
                process.stderr.close()


async def login(
    client: httpx.AsyncClient, username: str, password: str, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(
        "/api/auth/login", json={"username": username, "password": password}, headers=headers
    )


async def prepare(client: httpx.AsyncClient, one_time: str) -> None:
    """The admin sets a real password and signs in once from the desk (a known address)."""
    first = await login(client, "admin", one_time, DESK)
    first.raise_for_status()
    changed = await client.post(
        "/api/auth/change-password",
        json={"current_password": one_time, "new_password": ADMIN_PASSWORD},
        headers={**DESK, "authorization": f"Bearer {first.json()['token']}"},
    )
    changed.raise_for_status()
    (await login(client, "admin", ADMIN_PASSWORD, DESK)).raise_for_status()


async def flood(
    url: str, one_time: str, spread: bool
) -> tuple[int, float, collections.Counter[int], float]:
    """The admin's status and seconds during the burst; the burst's statuses and seconds."""
    limits = httpx.Limits(max_connections=GUESSES + 10, max_keepalive_connections=GUESSES + 10)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        await prepare(client, one_time)
        statuses: collections.Counter[int] = collections.Counter()
        admin: list[tuple[int, float]] = []

        async def guess(n: int) -> None:
            username = f"user{n}" if spread else "admin"
            address = f"203.0.{n // 250}.{n % 250 + 1}" if spread else "203.0.113.7"
            answer = await login(client, username, f"guess {n}", {"x-forwarded-for": address})
            statuses[answer.status_code] += 1

        async def real_admin() -> None:
            # In the thick of it: once ten guesses have been answered, the rest are in flight.
            while sum(statuses.values()) < 10:
                await trio.sleep(0.005)
            began = time.monotonic()
            answer = await login(client, "admin", ADMIN_PASSWORD, DESK)
            admin.append((answer.status_code, time.monotonic() - began))

        began = time.monotonic()
        async with trio.open_nursery() as nursery:
            for n in range(GUESSES):
                nursery.start_soon(guess, n)
            nursery.start_soon(real_admin)
        burst_s = time.monotonic() - began
    return admin[0][0], admin[0][1], statuses, burst_s


def measure() -> list[Figure]:
    """Both floods, each on a fresh server."""
    figures = []
    for spread in (False, True):
        with server() as (url, one_time):
            status, seconds, statuses, burst_s = trio.run(flood, url, one_time, spread)
        kind = "200 addresses x 200 users" if spread else "1 address x admin"
        answers = " ".join(f"{code}x{count}" for code, count in sorted(statuses.items()))
        figures.append(
            Figure(
                "login flood",
                f"admin sign-in during {kind} (HTTP {status})",
                f"{seconds:.3f} s",
                baseline=f"burst {burst_s:.2f} s: {answers}",
            )
        )
    return figures


if __name__ == "__main__":
    print(f"llm-proxy login flood on {machine()}")
    print(render(measure()))
