"""The connection's idle timer (web/idle_timer.py): one task whose deadline moves."""

from __future__ import annotations

import trio

from web.idle_timer import IdleTimer


class _Group:
    """What the timer uses of hypercorn's TaskGroup: its nursery."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery


class _Connection:
    def __init__(self) -> None:
        self.terminated = trio.Event()
        self.closed_at: float | None = None

    async def close(self) -> None:
        self.closed_at = trio.current_time()


async def _started(nursery: trio.Nursery, connection: _Connection) -> IdleTimer:
    timer = IdleTimer(5.0, connection.terminated.wait, connection.close)
    await timer.restart(_Group(nursery), object())
    return timer


async def test_an_idle_connection_closes_at_its_deadline(autojump_clock: object) -> None:
    connection = _Connection()
    async with trio.open_nursery() as nursery:
        timer = await _started(nursery, connection)
        await trio.sleep(4)
        timer.busy()  # the first request came in time
        await trio.sleep(100)  # an answer of any length has no timer
        assert connection.closed_at is None
        timer.idle(2.0)
    assert connection.closed_at == 106.0


async def test_each_idle_period_gets_its_own_deadline(autojump_clock: object) -> None:
    connection = _Connection()
    async with trio.open_nursery() as nursery:
        timer = await _started(nursery, connection)  # the first request's deadline: 5
        await trio.sleep(1)
        timer.busy()
        await trio.sleep(1)
        timer.idle(10.0)  # keep-alive after the answer: 2 + 10
        await trio.sleep(9)
        timer.busy()
        timer.idle(3.0)  # a short request, then idle again: 11 + 3
    assert connection.closed_at == 14.0


async def test_a_stopping_server_closes_idle_connections_now_busy_ones_when_done(
    autojump_clock: object,
) -> None:
    connection = _Connection()
    async with trio.open_nursery() as nursery:
        timer = await _started(nursery, connection)
        timer.busy()
        await trio.sleep(1)
        connection.terminated.set()
        await trio.sleep(30)
        assert connection.closed_at is None  # its answer is still being sent
        timer.idle(60.0)
    assert connection.closed_at == 31.0


async def test_a_stopped_timer_ends_without_closing(autojump_clock: object) -> None:
    connection = _Connection()
    async with trio.open_nursery() as nursery:
        timer = await _started(nursery, connection)
        await timer.stop()
    assert connection.closed_at is None
    early = IdleTimer(5.0, connection.terminated.wait, connection.close)
    async with trio.open_nursery() as nursery:
        await early.stop()  # before its task started: it never runs
        await early.restart(_Group(nursery), object())
    assert connection.closed_at is None
