"""Retention: prunes the request log to ``[logging] retention_days`` and the stored responses to
``[responses] retention_days`` shortly after start, then every hour.

Each pass deletes the rows older than the cutoff in small batches, one writer job each, pausing
between jobs so the records of live calls are written in between and the write lock is never held
long; then it gives the freed pages back to the file system with incremental vacuum, in bounded
steps too. ``usage_hourly`` is never touched, so the dashboard's history outlives the rows.
A failed pass is logged and retried at the next one; the gateway goes on either way.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Final, Protocol, TypeVar

import trio

from storage.responses import delete_expired_responses
from storage.retention import (
    DAY_MS,
    cutoff_ms,
    delete_requests_before,
    freelist_pages,
    incremental_vacuum,
)
from storage.sql import Connection

log = logging.getLogger("llm_proxy.retention")

T = TypeVar("T")

FIRST_RUN_AFTER_S: float = 60.0
RUN_EVERY_S: float = 3600.0
BATCH_ROWS: Final = 1000
# 4 MiB at SQLite's default 4 KiB page: a few milliseconds of the write lock.
VACUUM_PAGES: Final = 1000
# A pass gives back at most this many steps' pages (~4 GiB); the rest waits for the next pass.
MAX_VACUUM_STEPS: Final = 1000
PAUSE_S: Final = 0.02
JOB_TIMEOUT_S: Final = 60.0


class Executor(Protocol):
    """Where the jobs run: the StorageWriter."""

    async def execute(self, fn: Callable[[Connection], T], *, timeout_s: float = ...) -> T:
        """Run ``fn(conn)`` in its own write transaction and return its value."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionStatistics:
    """What retention has done since start."""

    retention_days: int  # 0: the log is kept forever
    response_retention_days: int | None  # None: stored responses are not pruned here
    passes: int
    rows_deleted: int
    responses_deleted: int
    pages_freed: int
    errors: int
    running: bool
    last_run_ms: int | None  # wall clock when the last pass finished (or failed)
    last_rows_deleted: int
    last_responses_deleted: int


class Retention:
    """The actor that deletes request rows and stored responses past their retention periods."""

    def __init__(
        self,
        writer: Executor,
        retention_days: int,
        *,
        response_retention_days: int | None = None,
        first_run_after_s: float | None = None,
        run_every_s: float | None = None,
        batch_rows: int = BATCH_ROWS,
        vacuum_pages: int = VACUUM_PAGES,
        max_vacuum_steps: int = MAX_VACUUM_STEPS,
        pause_s: float = PAUSE_S,
        clock_ms: Callable[[], int] | None = None,
        vacuum: bool = True,
    ) -> None:
        """``vacuum``: give freed pages back after deleting (SQLite's incremental vacuum); false
        on PostgreSQL, whose autovacuum reuses the space itself."""
        if retention_days < 0:
            raise ValueError(f"retention_days must not be negative, got {retention_days}")
        if response_retention_days is not None and response_retention_days < 1:
            raise ValueError(
                f"response_retention_days must be positive, got {response_retention_days}"
            )
        self._writer = writer
        self._days = retention_days
        self._response_days = response_retention_days
        # None: the module's constants as they are now (tests shorten them with monkeypatch).
        self._first_run_after_s = (
            FIRST_RUN_AFTER_S if first_run_after_s is None else first_run_after_s
        )
        self._run_every_s = RUN_EVERY_S if run_every_s is None else run_every_s
        self._batch_rows = batch_rows
        self._vacuum_pages = vacuum_pages
        self._max_vacuum_steps = max_vacuum_steps if vacuum else 0
        self._pause_s = pause_s
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._closed = trio.Event()
        self._passes = self._rows_deleted = self._pages_freed = self._errors = 0
        self._responses_deleted = 0
        self._running = False
        self._last_run_ms: int | None = None
        self._last_rows_deleted = 0
        self._last_responses_deleted = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Prune after a short delay, then every ``run_every_s``, until :meth:`close`."""
        async with trio.open_nursery() as nursery:
            if self._days == 0:
                log.info("retention: request log kept forever (logging.retention_days = 0)")
            if self._days != 0 or self._response_days is not None:
                nursery.start_soon(self._prune_periodically)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    async def _prune_periodically(self) -> None:
        await trio.sleep(self._first_run_after_s)
        while True:
            await self._pass_logging_errors()
            await trio.sleep(self._run_every_s)

    def close(self) -> None:
        """Stop: a pass in progress ends after its current batch (which commits or not at all)."""
        self._closed.set()

    def statistics(self) -> RetentionStatistics:
        """Counters for health and metrics."""
        return RetentionStatistics(
            retention_days=self._days,
            response_retention_days=self._response_days,
            passes=self._passes,
            rows_deleted=self._rows_deleted,
            responses_deleted=self._responses_deleted,
            pages_freed=self._pages_freed,
            errors=self._errors,
            running=self._running,
            last_run_ms=self._last_run_ms,
            last_rows_deleted=self._last_rows_deleted,
            last_responses_deleted=self._last_responses_deleted,
        )

    async def prune_once(self) -> int:
        """One pass now: delete every request row and stored response past its retention
        period, give back the freed pages; return the request rows deleted. Raises what the
        writer raised (after counting it)."""
        now_ms = self._clock_ms()
        before_ms = cutoff_ms(now_ms, self._days)
        if before_ms is None and self._response_days is None:
            return 0
        self._running = True
        deleted = responses = 0
        try:
            if before_ms is not None:
                deleted = await self._in_batches(
                    partial(delete_requests_before, before_ms=before_ms, limit=self._batch_rows),
                    self._count_rows,
                )
            if self._response_days is not None:
                responses = await self._in_batches(
                    partial(
                        delete_expired_responses,
                        now_ms=now_ms,
                        cutoff_ms=now_ms - self._response_days * DAY_MS,
                        limit=self._batch_rows,
                    ),
                    self._count_responses,
                )
            if deleted or responses:
                await self._vacuum()
        except Exception:
            self._errors += 1
            raise
        finally:
            self._running = False
            self._passes += 1
            self._last_run_ms = self._clock_ms()
            self._last_rows_deleted = deleted
            self._last_responses_deleted = responses
        return deleted

    def _count_rows(self, count: int) -> None:
        self._rows_deleted += count

    def _count_responses(self, count: int) -> None:
        self._responses_deleted += count

    async def _in_batches(
        self, delete: Callable[[Connection], int], counted: Callable[[int], None]
    ) -> int:
        """Run a bounded delete job until one deletes less than a batch, counting each as it
        commits; return the total."""
        total = 0
        while True:
            count = await self._writer.execute(delete, timeout_s=JOB_TIMEOUT_S)
            counted(count)
            total += count
            if count < self._batch_rows:
                return total
            await trio.sleep(self._pause_s)

    async def _vacuum(self) -> None:
        """Give back free pages a bounded step at a time (none when vacuum is off)."""
        if self._max_vacuum_steps == 0:
            return
        for _ in range(self._max_vacuum_steps):
            freed = await self._writer.execute(
                partial(incremental_vacuum, pages=self._vacuum_pages), timeout_s=JOB_TIMEOUT_S
            )
            self._pages_freed += freed
            if freed < self._vacuum_pages:
                return
            await trio.sleep(self._pause_s)
        left = await self._writer.execute(freelist_pages, timeout_s=JOB_TIMEOUT_S)
        log.info("retention: %d free pages left for the next pass", left)

    async def _pass_logging_errors(self) -> None:
        started = time.monotonic()
        try:
            deleted = await self.prune_once()
        except Exception as exc:  # trio.TooSlowError included: the writer was too busy
            log.warning(
                "retention: pruning the request log failed (%r); retrying in %.0f s",
                exc,
                self._run_every_s,
            )
            return
        if deleted:
            log.info(
                "retention: deleted %d request rows older than %d days in %.1f s",
                deleted,
                self._days,
                time.monotonic() - started,
            )
        if self._last_responses_deleted:
            log.info(
                "retention: deleted %d stored responses past their %d days",
                self._last_responses_deleted,
                self._response_days,
            )
