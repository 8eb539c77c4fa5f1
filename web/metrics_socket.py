"""A worker's own metrics on a unix socket, for the sibling that answers ``GET /metrics``.

With ``[server] workers = N`` the kernel hands a scrape to any one worker; that worker asks each
sibling here for its exposition and answers for all of them (:mod:`web.sibling_metrics`). A
connection gets the encoded exposition (:meth:`web.prometheus_text.Exposition.encode`) and EOF;
it sends nothing. At most :data:`MAX_CONNECTIONS` are answered at once (the rest wait in the
listen backlog), each within :data:`ANSWER_DEADLINE_S`, so a stuck reader never holds a slot.
The socket lives in the supervisor's private directory, mode 0600.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Final, final

import trio

from proxy.errors import StartupError
from web.prometheus_text import Exposition

log = logging.getLogger("llm_proxy.metrics")

MAX_CONNECTIONS: Final = 4
ANSWER_DEADLINE_S: Final = 5.0
BACKLOG: Final = 16


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsSocketStatistics:
    """How often the socket answered, and how often an answer was cut (reader gone or slow)."""

    answered: int
    failed: int


def _bind_private(sock: socket.socket, path: str) -> None:
    """Bind at ``path`` (a dead predecessor's socket file removed first), mode 0600."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock.bind(path)
    os.chmod(path, 0o600)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@final
class MetricsSocket:
    """Serves ``render()``'s exposition to each connection on a unix socket, until closed."""

    def __init__(self, path: str, render: Callable[[], Awaitable[Exposition]]) -> None:
        self._path = path
        self._render = render
        self._slots = trio.Semaphore(MAX_CONNECTIONS)
        self._scope = trio.CancelScope()
        self._answered = 0
        self._failed = 0

    def statistics(self) -> MetricsSocketStatistics:
        """Answers given and cut since start."""
        return MetricsSocketStatistics(self._answered, self._failed)

    def close(self) -> None:
        """Stop serving (idempotent, from any task, before or after :meth:`run`)."""
        self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, report started, answer connections until :meth:`close`."""
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # Binding creates a file: off the trio thread, like any file I/O.
            await trio.to_thread.run_sync(_bind_private, raw, self._path)
            raw.listen(BACKLOG)
            listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
        except OSError as exc:
            raw.close()
            raise StartupError(
                f"cannot serve this worker's metrics to the others on {self._path}: {exc}"
            ) from exc
        except BaseException:
            raw.close()
            raise
        try:
            with self._scope:
                async with listener, trio.open_nursery() as nursery:
                    task_status.started()
                    while True:
                        await self._slots.acquire()
                        try:
                            stream = await listener.accept()
                        except BaseException:
                            self._slots.release()
                            raise
                        nursery.start_soon(self._answer, stream)
        finally:
            with trio.move_on_after(1, shield=True):
                await trio.to_thread.run_sync(_unlink, self._path)

    async def _answer(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(ANSWER_DEADLINE_S) as deadline:
                exposition = await self._render()
                await stream.send_all(exposition.encode())
            if deadline.cancelled_caught:
                self._failed += 1
                log.debug("metrics socket: a sibling did not read its answer in time")
            else:
                self._answered += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._failed += 1  # the sibling gave up first (its own deadline)
        except Exception:
            # A bug in a part's statistics: the HTTP /metrics would fail alike. This worker
            # keeps serving; the sibling reports it missing.
            self._failed += 1
            log.exception("metrics socket: could not render this worker's metrics")
        finally:
            self._slots.release()
            await trio.aclose_forcefully(stream)
