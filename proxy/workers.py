"""``[server] workers = N``: the supervisor of N worker processes that share one port.

The supervisor is the process systemd (or a terminal) started. It serves nothing itself:

1. It checks the port is free (a port in use is the only thing said, as with one process) and
   keeps it reserved with a bound, not listening, SO_REUSEPORT socket, so ``--port 0`` names one
   port for every worker and nothing else takes it between worker restarts.
2. It prepares the database once — migrations, the first admin and its one-time password — so
   that N workers starting together never race to create two admins.
3. It starts N workers (:mod:`proxy.worker_process`), each a whole trio service whose listening
   socket has SO_REUSEPORT on the same host and port; the kernel spreads connections among them.
   Workers run in their own process group, so a terminal's Ctrl-C reaches only the supervisor,
   which forwards it; each dies with the supervisor (``PR_SET_PDEATHSIG``).
4. systemd (``Type=notify``, the supervisor the main PID): READY=1 once every worker is ready,
   WATCHDOG=1 while no running worker has missed its own watchdog, STOPPING=1 at shutdown. A
   worker that stops pinging is killed and restarted; a worker that crashes is restarted with a
   backoff; a worker that cannot start (a StartupError: its message is already logged) stops the
   whole service with its exit status.
5. Signals: the first SIGTERM/SIGINT stops every worker gracefully (SIGTERM: each lets its calls
   finish within the grace period); a second one cuts them short (SIGINT, their second signal)
   and the exit status is 128 + N.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from typing import Final, final

import trio

from proxy.config import Config
from proxy.errors import StartupError
from proxy.listener import ListenerConfig, hypercorn_config
from proxy.passwords import Passwords
from proxy.private_files import make_gateway_files_private
from proxy.sd_notify import WATCHDOG, Notifier, status
from proxy.serve import leaves
from proxy.stop_signals import HARD_STOP_AFTER_S, StopSignals
from proxy.worker_process import WorkerOrder, encode_order, worker_config
from proxy.worker_slot import WORKER_COMMAND, WorkerSlot, describe_status
from storage.database import configured_database
from storage.writer import StorageWriter
from web.first_admin import ensure_first_admin

log = logging.getLogger("llm_proxy.workers")

WORKER_WATCHDOG_S: Final = 10.0
"""A worker's watchdog period when systemd set none for the service: a hung worker (its trio
loop blocked) is killed and restarted after this long."""
START_TIMEOUT_S: Final = 120.0
"""A worker that has not reported ready by then is killed (and counts as failing to start)."""
CHECK_EVERY_S: Final = 0.5


def supervise(config: Config) -> int:
    """Run the supervisor until it is stopped; the process's exit status."""
    try:
        exit_status = trio.run(Supervisor(config).run)
    except* StartupError as group:
        for failure in leaves(group):
            logging.getLogger("llm_proxy").error("cannot start: %s", failure)
        exit_status = 1
    except* KeyboardInterrupt:
        # Ctrl-C before the supervisor handles signals itself (while it checks the port).
        logging.getLogger("llm_proxy").warning("interrupted (SIGINT)")
        exit_status = 130
    return exit_status


def reserve_port(config: Config) -> tuple[Config, ListenerConfig]:
    """Check the port is free and keep it; the config with the port bound, and the reservation.

    The first bind is without SO_REUSEPORT: another fleet of ours on the port (whose sockets do
    have it) would otherwise be joined silently instead of reported.
    """
    probe = hypercorn_config(config)
    probe.bind_now()
    try:
        port = probe.bound_port()
    finally:
        probe.close_unused()
    bound = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
    reservation = hypercorn_config(bound, shared_port=True)
    reservation.bind_now()
    return bound, reservation


async def prepare_database(config: Config) -> None:
    """Migrate the database and create the first admin, once, before any worker starts."""
    database = config.server.database
    writer = StorageWriter(
        configured_database(config), record_requests=config.logging.record_requests
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            await trio.to_thread.run_sync(make_gateway_files_private, database)
            if config.dashboard.enabled:
                hasher = await trio.to_thread.run_sync(Passwords)
                await ensure_first_admin(writer, hasher, database, now_ms=int(time.time() * 1000))
        finally:
            writer.close()


@final
class Supervisor:
    """Runs the workers of one ``serve``: start, watch, restart, stop."""

    def __init__(
        self,
        config: Config,
        *,
        notifier: Notifier | None = None,
        worker_command: Sequence[str] = WORKER_COMMAND,
    ) -> None:
        self._config = config
        self._worker_command = worker_command
        self._notifier = Notifier.from_environ() if notifier is None else notifier
        self._stopping = trio.Event()
        self._slots: list[WorkerSlot] = []
        self._failed_start: tuple[int, int] | None = None
        self._where = ""  # the URL the workers listen on, once they do
        self._signals = StopSignals(
            self.stop,
            self.stop_now,
            # After the workers' own hard stop, so they are the ones to cut their calls.
            hard_stop_after_s=HARD_STOP_AFTER_S + 5,
            exit_process=self._exit_now,
        )

    def stop(self) -> None:
        """Stop every worker gracefully (the first SIGTERM/SIGINT)."""
        self._stopping.set()
        self._signal_workers(signal.SIGTERM)

    def stop_now(self) -> None:
        """Cut the workers' grace period short (a second signal)."""
        self._stopping.set()
        # The workers had SIGTERM from stop(); this is their second signal. Not SIGTERM again:
        # trio keeps one pending entry per signal number, so a worker busy when both arrive
        # would see one SIGTERM and go on finishing its calls. SIGINT is a distinct entry,
        # delivered after the SIGTERM it follows.
        self._signal_workers(signal.SIGINT)

    def _signal_workers(self, signum: int) -> None:
        for slot in self._slots:
            slot.send_signal(signum)

    def _exit_now(self, exit_status: int) -> None:
        """Leave at once (a third signal): the workers go too, without waiting."""
        self._signal_workers(signal.SIGKILL)
        os._exit(exit_status)

    def _failed(self, number: int, exit_status: int) -> None:
        """A worker could not start: stop the others, and exit as it did."""
        if self._failed_start is None:
            self._failed_start = (number, exit_status)
            log.error(
                "worker %d could not start (%s): stopping", number, describe_status(exit_status)
            )
        self.stop()

    async def run(self) -> int:
        """The whole life of the supervisor; its exit status."""
        config, reservation = reserve_port(self._config)
        try:
            # From here on, as in one process: a signal during the preparation stops it too.
            async with self._signals.handling():
                await self._prepare_and_run(config)
        finally:
            reservation.close_unused()
        return self._exit_status()

    async def _prepare_and_run(self, config: Config) -> None:
        """Prepare the database, then run the workers until they have all stopped."""
        await prepare_database(config)
        if self._stopping.is_set():
            return
        watchdog_s = self._notifier.watchdog_interval_s
        # The workers' period is the service's own (they ping at half of it, as we do).
        worker_watchdog_s = 2 * watchdog_s if watchdog_s is not None else WORKER_WATCHDOG_S
        directory = tempfile.mkdtemp(prefix="llm-proxy-workers-")  # mode 0700
        try:
            self._slots = [
                WorkerSlot(
                    number,
                    encode_order(
                        WorkerOrder(
                            worker_config(config, number, config.server.port),
                            number,
                            os.getpid(),
                            # Each worker's metrics socket, for the one a scrape reaches.
                            metrics_dir=directory,
                            workers=config.server.workers,
                        )
                    ),
                    notify_path=os.path.join(directory, f"worker-{number}.sock"),
                    watchdog_s=worker_watchdog_s,
                    on_failed_start=self._failed,
                    command=self._worker_command,
                )
                for number in range(1, config.server.workers + 1)
            ]
            await self._run_workers()
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def _run_workers(self) -> None:
        log.info("starting %d workers", len(self._slots))
        async with trio.open_nursery() as nursery:
            for slot in self._slots:
                await nursery.start(slot.run, self._stopping)
            nursery.start_soon(self._watch)
            await self._wait_all_ready()
            if not self._stopping.is_set():
                self._where = self._slots[0].status_text.removeprefix("listening on ").strip()
                line = self._status_line(len(self._slots))
                log.info("%s", line)
                await self._notifier.notify("READY=1", status(line))
                nursery.start_soon(self._ping_watchdog)
                nursery.start_soon(self._report_serving)
            await self._stopping.wait()
            await self._notifier.notify("STOPPING=1", status("shutting down"))
            log.info("stopping %d workers", len(self._slots))
        self._log_exits()

    async def _wait_all_ready(self) -> None:
        async with trio.open_nursery() as waiting:
            waiting.start_soon(_cancel_when, self._stopping, waiting.cancel_scope)
            for slot in self._slots:
                await slot.first_ready.wait()
            waiting.cancel_scope.cancel()

    async def _watch(self) -> None:
        """Kill a worker that stopped pinging (its slot restarts it)."""
        while not self._stopping.is_set():
            now = trio.current_time()
            for slot in self._slots:
                if slot.overdue(now, start_timeout_s=START_TIMEOUT_S):
                    slot.kill_hung(now)
            await trio.sleep(CHECK_EVERY_S)

    def _status_line(self, serving: int) -> str:
        total = len(self._slots)
        counted = f"{total}" if serving == total else f"{serving} of {total}"
        return f"{counted} workers listening on {self._where}"

    async def _report_serving(self) -> None:
        """Keep ``systemctl status`` true while a worker is down: "1 of 2 workers listening"."""
        reported = len(self._slots)
        while not self._stopping.is_set():
            serving = sum(slot.ready for slot in self._slots)
            if serving != reported:
                reported = serving
                await self._notifier.notify(status(self._status_line(serving)))
            with trio.move_on_after(CHECK_EVERY_S):
                await self._stopping.wait()

    def healthy(self, now: float) -> bool:
        """Whether no running worker is overdue (the condition of our own watchdog pings)."""
        return not any(slot.overdue(now, start_timeout_s=START_TIMEOUT_S) for slot in self._slots)

    async def _ping_watchdog(self) -> None:
        interval = self._notifier.watchdog_interval_s
        if interval is None:
            return
        while not self._stopping.is_set():
            if self.healthy(trio.current_time()):
                await self._notifier.notify(WATCHDOG)
            with trio.move_on_after(interval):
                await self._stopping.wait()

    def _log_exits(self) -> None:
        for slot in self._slots:
            if slot.exit_status != 0:
                log.warning(
                    "worker %d exited with %s", slot.number, describe_status(slot.exit_status)
                )

    def _exit_status(self) -> int:
        """As one process: the failed start's status, 128 + N after a second signal, else 0
        (or the status of a worker that did not stop cleanly)."""
        if self._failed_start is not None:
            status_ = self._failed_start[1]
            return status_ if status_ > 0 else 1
        if self._signals.exit_status:
            return self._signals.exit_status
        failures = [slot.exit_status for slot in self._slots if slot.exit_status > 0]
        return failures[0] if failures else 0


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
