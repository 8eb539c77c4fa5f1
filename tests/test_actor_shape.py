"""Every actor has one shape and one way to stop (``actors/__init__.py``): ``close()``, whenever
it is called — before ``run`` started too — makes ``run`` finish and return; twice is harmless."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import trio

from actors import Actor
from actors.fleet_limiter import FleetLimiter
from actors.fleet_sessions import FleetSessionStore
from actors.rate_limiter import RateLimiter
from actors.redis_link import RedisLink
from actors.request_logger import RequestLogger
from actors.retention import Retention
from actors.session_store import SessionStore, UserState
from proxy.pricing import Pricer
from proxy.records import RequestRecord
from storage.writer import StorageWriter
from web.hangups import HangupWatcher


class ListSink:
    """A record sink keeping what it was given."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        self.records.extend(records)


async def _no_users() -> dict[str, UserState]:
    return {}


class NoWriter:
    """Retention's executor, never reached when it is closed before its first pass."""

    async def execute(self, fn: object) -> object:
        raise AssertionError("no pass expected")


UNUSED_REDIS = "redis://127.0.0.1:9/0"

ACTORS: dict[str, Callable[[Path], Actor]] = {
    "rate limiter": lambda _: RateLimiter(global_requests_per_minute=0),
    # Its link is never run: closing needs no Redis (nothing pending to send).
    "fleet limiter": lambda _: FleetLimiter(RedisLink(UNUSED_REDIS, instance="test")),
    "session store": lambda _: SessionStore(3600, _no_users),
    # Never connected: the link is not run, and close() needs no round trip.
    "fleet session store": lambda _: FleetSessionStore(
        RedisLink("redis://127.0.0.1:9/0", instance="test"), 3600, _no_users
    ),
    "retention": lambda _: Retention(NoWriter(), 30),  # type: ignore[arg-type]
    "request logger": lambda _: RequestLogger(ListSink(), Pricer()),
    "hangup watcher": lambda _: HangupWatcher(),
    "storage writer": lambda tmp: StorageWriter(str(tmp / "actors.db")),
}


@pytest.mark.parametrize("name", ACTORS)
async def test_close_before_run_makes_run_return(name: str, tmp_path: Path) -> None:
    actor = ACTORS[name](tmp_path)
    actor.close()
    actor.close()
    # The real clock: the writer opens its database in a thread.
    with trio.fail_after(10):
        await actor.run()


@pytest.mark.parametrize("name", ACTORS)
async def test_close_while_running_makes_run_return(name: str, tmp_path: Path) -> None:
    actor = ACTORS[name](tmp_path)
    done = trio.Event()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await actor.run(task_status=task_status)
        done.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        actor.close()
        actor.close()
        with trio.fail_after(10):
            await done.wait()
