"""SIGTERM and SIGINT while ``serve`` runs: the first stops gracefully, a second stops now.

The first signal begins the graceful shutdown of design §2 (in-flight calls get the grace
period). A second one, during it, means the operator will not wait: the calls still running are
cut at once, as when the grace period runs out (each is answered 503 if its connection still
takes it, and logged), the actors drain what they hold into SQLite, and the process exits with
status 128 + the signal's number (130 after Ctrl-C, 143 after SIGTERM), the shell's convention
for "ended by that signal". One log line says so; no traceback.

Cutting is cancellation, which is prompt except where something cannot be cancelled (hypercorn
writing to a client that stopped reading, a worker thread): so the second signal also arms a
deadline after which the process leaves without waiting, and a third signal leaves at once.
The receiver stays open until the service has stopped, so no signal ever falls back to Python's
default handler (a ``KeyboardInterrupt`` traceback, or death by SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

import trio

log = logging.getLogger("llm_proxy.service")

HARD_STOP_AFTER_S: Final = 5.0
"""After the second signal, the process exits by then whatever is still running."""


class StopSignals:
    """Turns SIGTERM/SIGINT into ``stop`` (the first) and ``stop_now`` (the second)."""

    def __init__(
        self,
        stop: Callable[[], None],
        stop_now: Callable[[], None],
        *,
        hard_stop_after_s: float = HARD_STOP_AFTER_S,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        self._stop = stop
        self._stop_now = stop_now
        self._hard_stop_after_s = hard_stop_after_s
        self._exit_process = exit_process
        self._received = 0
        self.exit_status = 0
        """0, or 128 + the number of the second signal."""

    @asynccontextmanager
    async def handling(self) -> AsyncIterator[None]:
        """Handle the signals for the duration of the block."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._receive)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    async def _receive(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                self.received(signum)

    def received(self, signum: int) -> None:
        """Act on one signal."""
        self._received += 1
        name = signal.Signals(signum).name
        if self._received == 1:
            log.info("received %s: shutting down", name)
            self._stop()
        elif self._received == 2:
            self.exit_status = 128 + signum
            log.warning(
                "second signal (%s): stopping now, without waiting for calls in flight", name
            )
            self._stop_now()
            timer = threading.Timer(self._hard_stop_after_s, self._exit_now, (name,))
            timer.daemon = True
            timer.start()
        else:
            self._exit_now(name)

    def _exit_now(self, name: str) -> None:
        """Leave at once: what is not stored by now is the price of insisting."""
        log.error("%s: still stopping; exiting without waiting any longer", name)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit_process(self.exit_status)
