"""Cancelling a call whose client hung up, so an abandoned request stops costing upstream tokens.

hypercorn does not cancel an app when its client leaves; it queues ``http.disconnect`` on the
call's ``receive``, so someone has to wait on that beside the call. A task per call costs ~45 µs
(spawn, first run, cancellation, nursery exit): 5% of a whole non-streaming call at full load,
and nearly every such call is over before a client could hang up. So a non-streaming call gets its
watcher only once it has run for ``delay`` seconds — one sweeper task hands them out — and a
hang-up before that is noticed at most ``delay`` late. Streams are watched from the start.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import trio

from web.asgi import Receive, wait_disconnect

# Under load a short call spends tens of milliseconds in the run queue (p50 28 ms at 32
# connections on the bench machine), so a smaller delay would watch nearly every call anyway; 80 ms
# keeps a non-streaming hang-up within the 100 ms budget for closing the upstream call.
WATCH_AFTER_S: Final = 0.08


class _Watch:
    """One call being watched (or due to be)."""

    __slots__ = ("active", "due", "on_hangup", "receive", "scope")

    def __init__(self, receive: Receive, on_hangup: Callable[[], None], due: float) -> None:
        self.receive = receive
        self.on_hangup = on_hangup
        self.due = due
        self.active = True
        self.scope: trio.CancelScope | None = None


class HangupWatcher:
    """Runs the watchers of calls in flight; ``run`` must be running while calls are served."""

    def __init__(self, delay: float = WATCH_AFTER_S) -> None:
        self._delay = delay
        self._pending: collections.deque[_Watch] = collections.deque()
        self._nursery: trio.Nursery | None = None
        self._work = trio.Event()
        self._sleeping = False
        self._closed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hand out watchers until :meth:`close`; the watchers end with the calls they watch."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                nursery.start_soon(self._sweep)
                task_status.started()
                await self._closed.wait()
            finally:
                self._nursery = None
                nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stop: calls still running are no longer watched (the server has drained by now)."""
        self._closed.set()

    @contextmanager
    def watch(
        self, receive: Receive, on_hangup: Callable[[], None], *, at_once: bool = False
    ) -> Iterator[None]:
        """Call ``on_hangup`` if the client goes away before the block ends.

        ``receive`` must have delivered the whole request body already: the watcher reads on.
        """
        entry = _Watch(receive, on_hangup, trio.current_time() + self._delay)
        if at_once:
            self._start(entry)
        else:
            self._pending.append(entry)
            if self._sleeping:
                self._sleeping = False
                self._work.set()
        try:
            yield
        finally:
            entry.active = False
            if entry.scope is not None:
                entry.scope.cancel()

    async def _sweep(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._work = trio.Event()
                self._sleeping = True
                await self._work.wait()
                continue
            now = trio.current_time()
            while pending and (pending[0].due <= now or not pending[0].active):
                entry = pending.popleft()
                if entry.active:
                    self._start(entry)
            if pending:
                await trio.sleep_until(pending[0].due)

    def _start(self, entry: _Watch) -> None:
        if self._nursery is None:
            return  # not running (shutting down): the call goes unwatched
        entry.scope = trio.CancelScope()
        self._nursery.start_soon(self._watch, entry)

    @staticmethod
    async def _watch(entry: _Watch) -> None:
        assert entry.scope is not None
        with entry.scope:
            await wait_disconnect(entry.receive)
            if entry.active:
                entry.on_hangup()
