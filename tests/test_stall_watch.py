"""The stall watch (actors/stall_watch.py): the deadline on each next chunk, kept by one task."""

from __future__ import annotations

import trio

from actors.stall_watch import StallWatch


class _Stream:
    def __init__(self) -> None:
        self.since: float | None = None
        self.stalls: list[float] = []

    def waiting_since(self) -> float | None:
        return self.since

    def stalled(self) -> None:
        self.stalls.append(trio.current_time())


async def test_a_wait_past_its_deadline_is_told_within_a_tick_never_early(
    autojump_clock: object,
) -> None:
    watch = StallWatch(timeout_s=2.0)  # a tick of 0.2 s
    stream, other = _Stream(), _Stream()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        with watch.watching(stream), watch.watching(other):
            stream.since = trio.current_time()  # waits from 0
            await trio.sleep(1.5)
            other.since = trio.current_time()  # waits from 1.5, then gets its chunk at 3
            await trio.sleep(1.5)
            other.since = None
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert stream.stalls
    assert 2.0 <= stream.stalls[0] <= 2.0 + 0.2 + 1e-9
    # Told again on later ticks while it still waits: an abort ends only a wait under way.
    assert len(stream.stalls) > 1
    assert other.stalls == []


async def test_the_watch_sleeps_without_streams(autojump_clock: object) -> None:
    watch = StallWatch(timeout_s=1.0)
    stream = _Stream()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch.run)
        await trio.sleep(100)  # nothing watched: the watch waits for a stream
        with watch.watching(stream):
            stream.since = trio.current_time()
            await trio.sleep(1.5)
        assert stream.stalls
        nursery.cancel_scope.cancel()
