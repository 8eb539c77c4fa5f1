"""One numbered worker slot of the supervisor: its process, restarted when it dies, and what it
says on its private notify socket (READY, WATCHDOG pings, STOPPING, STATUS).

Each slot listens on its own unix datagram socket in a directory only this user can enter, and
gives its path to the worker as ``$NOTIFY_SOCKET`` with ``$WATCHDOG_USEC``: the worker's
unchanged :class:`proxy.sd_notify.Notifier` then reports to the supervisor as it would to
systemd, and the socket tells the slot which worker spoke.

The process is started with :class:`subprocess.Popen` on the trio thread, not through
``trio.lowlevel.open_process`` (which forks from a worker thread): the worker's
``PR_SET_PDEATHSIG`` fires when the *thread* that forked it ends, and trio's idle worker threads
end after a few seconds. Its exit is awaited through a pidfd.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Final, final

import trio

from proxy.sd_notify import READY, STOPPING, WATCHDOG

log = logging.getLogger("llm_proxy.workers")

RESTART_FIRST_S: Final = 1.0
RESTART_MAX_S: Final = 30.0
STABLE_AFTER_S: Final = 60.0
"""A worker that ran this long before it died starts the backoff from the beginning again."""

WORKER_COMMAND: Final = (sys.executable, "-m", "proxy.worker_process")

_NOT_INHERITED: Final = ("WATCHDOG_PID", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def describe_status(status: int) -> str:
    """``status 1`` or ``signal SIGKILL``: how a process ended, for a log line."""
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


def worker_environment(
    environ: Mapping[str, str], notify_path: str, watchdog_s: float
) -> dict[str, str]:
    """The worker's environment: ours, with its private notify socket and watchdog period."""
    env = {key: value for key, value in environ.items() if key not in _NOT_INHERITED}
    env["NOTIFY_SOCKET"] = notify_path
    env["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
    return env


@final
class WorkerSlot:
    """Worker number ``number``: started, heard, restarted after a crash, stopped on request."""

    def __init__(
        self,
        number: int,
        order: bytes,
        *,
        notify_path: str,
        watchdog_s: float,
        on_failed_start: Callable[[int, int], None],
        environ: Mapping[str, str] | None = None,
        command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self.number = number
        self._command = tuple(command)
        self._order = order
        self._notify_path = notify_path
        self._watchdog_s = watchdog_s
        self._on_failed_start = on_failed_start
        self._environ = os.environ if environ is None else environ
        self._process: subprocess.Popen[bytes] | None = None
        self.first_ready = trio.Event()
        """Set when the first worker of this slot reported READY=1."""
        self.ready = False
        """Whether the worker running now has reported READY=1."""
        self.heard_at = 0.0
        """``trio.current_time()`` of its last READY=1 or WATCHDOG=1."""
        self.spawned_at = 0.0
        self.status_text = ""
        """Its last STATUS=, e.g. ``listening on http://…``."""
        self.exit_status = 0
        """How the last worker ended (negative: the signal)."""
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running worker's pid, or None between workers."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def send_signal(self, signum: int) -> None:
        """Signal the running worker, if any (a worker that just died is not an error)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)

    async def run(
        self, stopping: trio.Event, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep a worker running until ``stopping``; return once the last one has exited."""
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            await sock.bind(self._notify_path)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, sock)
                task_status.started()
                await self._keep_running(stopping)
                nursery.cancel_scope.cancel()

    async def _keep_running(self, stopping: trio.Event) -> None:
        backoff = RESTART_FIRST_S
        while not stopping.is_set():
            self._spawn()
            await self._send_order()
            status = await self._wait_exit()
            ran_s = trio.current_time() - self.spawned_at
            self.exit_status = status
            self.ready = False
            if stopping.is_set():
                return
            if not self.first_ready.is_set():
                # As a single process would: a worker that cannot start stops the service.
                self._on_failed_start(self.number, status)
                return
            if ran_s >= STABLE_AFTER_S:
                backoff = RESTART_FIRST_S
            log.error(
                "worker %d (pid %d) exited with %s; restarting it in %.0f s",
                self.number,
                self._pid_of_last(),
                describe_status(status),
                backoff,
            )
            with trio.move_on_after(backoff):
                await stopping.wait()
            backoff = min(backoff * 2, RESTART_MAX_S)
            self.restarts += 1

    def _pid_of_last(self) -> int:
        return self._process.pid if self._process is not None else 0

    def _spawn(self) -> None:
        """Start the worker in its own process group (a terminal's Ctrl-C reaches only us)."""
        env = worker_environment(self._environ, self._notify_path, self._watchdog_s)
        self._process = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            env=env,
            process_group=0,
            close_fds=True,
        )
        self.spawned_at = trio.current_time()
        self.heard_at = self.spawned_at
        self.ready = False
        log.info("worker %d started (pid %d)", self.number, self._process.pid)

    async def _send_order(self) -> None:
        """Write the order to the worker's stdin and close it (in a thread: it may not fit the
        pipe at once)."""
        assert self._process is not None
        assert self._process.stdin is not None
        await trio.to_thread.run_sync(_write_and_close, self._process.stdin, self._order)

    async def _wait_exit(self) -> int:
        """Wait for the worker to exit, without a thread: its pidfd turns readable."""
        process = self._process
        assert process is not None
        pidfd = os.pidfd_open(process.pid)
        try:
            while process.poll() is None:
                await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        assert process.returncode is not None
        return process.returncode

    async def _listen(self, sock: trio.socket.SocketType) -> None:
        """Read the worker's notifications for as long as the slot runs."""
        while True:
            data = await sock.recv(4096)
            self.heard(data.decode(errors="replace"), trio.current_time())

    def heard(self, datagram: str, now: float) -> None:
        """Act on one notification datagram (``KEY=VALUE`` lines)."""
        for line in datagram.splitlines():
            if line == READY:
                self.ready = True
                self.heard_at = now
                if not self.first_ready.is_set():
                    self.first_ready.set()
                elif self.restarts:
                    log.info("worker %d (pid %s) is serving again", self.number, self.pid)
            elif line == WATCHDOG:
                self.heard_at = now
            elif line == STOPPING:
                self.ready = False
            elif line.startswith("STATUS="):
                self.status_text = line.removeprefix("STATUS=")

    def overdue(self, now: float, *, start_timeout_s: float) -> bool:
        """Whether the running worker has stopped pinging (or has not started in time)."""
        if self.pid is None:
            return False
        limit = self._watchdog_s if self.ready else start_timeout_s
        return now - self.heard_at > limit

    def kill_hung(self, now: float) -> None:
        """Kill a worker that stopped answering; :meth:`run` then restarts it."""
        pid = self.pid
        if pid is None:
            return
        log.error(
            "worker %d (pid %d) sent no watchdog ping for %.1f s: killing it",
            self.number,
            pid,
            now - self.heard_at,
        )
        self.send_signal(signal.SIGKILL)
        self.heard_at = now  # one kill per hang, not one per check while it dies


def _write_and_close(stream: IO[bytes], data: bytes) -> None:
    try:
        stream.write(data)
        stream.close()
    except BrokenPipeError:
        pass  # the worker died at once; its exit status says why
