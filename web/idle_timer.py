"""A connection's idle timer: one task per connection whose deadline moves, no task per request.

hypercorn's trio worker keeps its idle timer in a ``TrioSingleTask``: each time a connection
turns idle it starts a new task (a lock, ``nursery.start``, two cancel scopes) and each time a
request arrives it cancels it — twice per request, a fifth of a small answer's cost. Here one
task per connection waits under a cancel scope whose deadline is set when the connection turns
idle (:meth:`IdleTimer.idle`) and lifted when it turns busy (:meth:`IdleTimer.busy`): both are
plain assignments, without an ``await``.

It stands in for hypercorn's ``idle_task`` (``restart`` and ``stop``, as ``TCPServer.run``
calls them): the first ``restart`` starts the task, ``stop`` ends it for good.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

CLOSE_DEADLINE_S = 1.0  # closing a socket never blocks; a bound all the same


class IdleTimer:
    """Closes the connection once it has been idle past its deadline, or the server stops."""

    def __init__(
        self,
        first_timeout_s: float,
        terminated: Callable[[], Awaitable[object]],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self._first_timeout_s = first_timeout_s
        self._terminated = terminated
        self._close = close
        self._deadline = math.inf
        self._busy = False
        self._waiting: trio.CancelScope | None = None
        self._task: trio.CancelScope | None = None
        self._started = False
        self._stopped = False
        self._server_stopping = False  # the server is shutting down: close once idle

    def idle(self, timeout_s: float) -> None:
        """The connection has nothing to do: close it ``timeout_s`` from now unless it works."""
        self._busy = False
        self._set(trio.current_time() + (0.0 if self._server_stopping else timeout_s))

    def busy(self) -> None:
        """A request is being served: no deadline until the connection is idle again."""
        self._busy = True
        self._set(math.inf)

    def _set(self, deadline: float) -> None:
        self._deadline = deadline
        if self._waiting is not None:
            self._waiting.deadline = deadline

    async def restart(self, task_group: Any, action: object) -> None:
        """hypercorn's call when the connection starts: the timer's task starts, its deadline the
        first request's (``action``, hypercorn's own timer, is not used)."""
        if not self._started:
            self._started = True
            self.idle(self._first_timeout_s)
            # hypercorn's TaskGroup wraps a trio nursery, which its own timer task uses too.
            task_group._nursery.start_soon(self._watch)
        await trio.lowlevel.checkpoint()

    async def stop(self) -> None:
        """The connection stopped reading: the timer ends (it must not keep the socket open)."""
        self._started = self._stopped = True  # a timer stopped before it started never runs
        if self._task is not None:
            self._task.cancel()
        await trio.lowlevel.checkpoint()

    async def _watch(self) -> None:
        if self._stopped:
            return
        with trio.CancelScope() as self._task:
            while True:
                with trio.CancelScope(deadline=self._deadline) as waiting:
                    self._waiting = waiting
                    if self._server_stopping:
                        await trio.sleep_forever()
                    await self._terminated()
                    # The server is stopping: an idle connection closes now, a busy one as
                    # soon as its answer is complete (idle() then sets the deadline to now).
                    self._server_stopping = True
                self._waiting = None
                if not self._busy and (
                    self._server_stopping or trio.current_time() >= self._deadline
                ):
                    break
                # Busy (the deadline passed just as a request came), or the deadline moved.
        if self._task.cancelled_caught:
            return
        with trio.move_on_after(CLOSE_DEADLINE_S, shield=True):
            await self._close()
