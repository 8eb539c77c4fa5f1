"""The StorageWriter actor: the only task of a process that writes to the database, in batches, on
its own thread."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, final

import outcome
import trio

from proxy.errors import StartupError
from proxy.records import RequestRecord
from storage.batch import is_row_error, write_batch, write_rows_one_by_one
from storage.connection import BusyWaits
from storage.database import Database, database_at
from storage.migrations import SchemaTooNewError
from storage.outage import Outage
from storage.sql import DATABASE_ERRORS, Connection
from storage.transaction import in_immediate_transaction, in_one_transaction_each_in_savepoint
from storage.writer_counters import WriterCounters
from storage.writer_inbox import Job, Records, WriterMessage, WriterStatistics

__all__ = ["StorageWriter", "WriterStatistics"]

T = TypeVar("T")

logger = logging.getLogger("llm_proxy.storage")

_BACKOFF_FIRST_S = 0.1
_BACKOFF_MAX_S = 5.0


class _PastShutdownDeadline(Exception):
    """Closed during an outage, and the shutdown deadline passed: stop retrying."""


def _nothing(conn: Connection) -> None:
    """A job that only proves the write lock can be taken."""


@final
class StorageWriter:
    """The single writer: batches request records, runs dashboard writes in order.

    ``database`` is a :class:`Database`, or a SQLite path or PostgreSQL URL (:func:`database_at`).
    """

    def __init__(
        self,
        database: str | Database,
        *,
        max_batch: int = 500,
        max_delay_s: float = 0.05,
        inbox_size: int = 8192,
        idle_checkpoint_s: float = 5.0,
        busy_timeout_ms: int = 5000,
        shutdown_timeout_s: float = 10.0,
        record_requests: bool = True,
        outage_buffer_records: int = 100_000,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._database = database_at(database, busy_timeout_ms=busy_timeout_ms)
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._idle_checkpoint_s = idle_checkpoint_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._rows = record_requests  # False: only the usage_hourly totals are written
        # While the database is down, records wait in memory up to this many, then are dropped.
        self._outage = Outage(outage_buffer_records, self._database.describe())
        self._recovering = False
        self._held: list[Job] = []  # jobs met during an outage, answered by the next attempt
        # Bounded in messages; a message carries a sequence of records or one job.
        self._send, self._receive = trio.open_memory_channel[WriterMessage](inbox_size)
        self._limiter = trio.CapacityLimiter(1)
        self._conn: Connection | None = None
        self._started = False
        self._closed = False
        self._stop_by = math.inf  # once closed: when to stop trying to store what is left
        self._pending: list[RequestRecord] = []
        self._pending_deadline = math.inf
        self._dirty = False
        self._queued = 0
        self._counts = WriterCounters()
        self._busy = BusyWaits()

    # --- facade -------------------------------------------------------------------------------

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        """Queue records for storage, waiting while the inbox is full (never on a database outage:
        the writer then buffers up to ``outage_buffer_records`` and drops, counted, past that).

        Raises ``trio.ClosedResourceError`` after ``close()``.
        """
        batch = tuple(records)
        if not batch:
            await trio.lowlevel.checkpoint()
            return
        self._queued += len(batch)
        try:
            await self._send.send(Records(batch, trio.current_time()))
        except BaseException:
            self._queued -= len(batch)
            raise

    def write_requests_nowait(self, records: Sequence[RequestRecord]) -> None:
        """Queue records for storage; raise ``trio.WouldBlock`` when the inbox is full."""
        batch = tuple(records)
        if not batch:
            return
        self._send.send_nowait(Records(batch, trio.current_time()))
        self._queued += len(batch)

    async def execute(
        self,
        fn: Callable[[Connection], T],
        *,
        timeout_s: float = 10.0,
        shares_commit: bool = False,
    ) -> T:
        """Run ``fn(conn)`` in its own IMMEDIATE transaction on the writer thread, return its value.

        Runs after every record queued before it. ``fn``'s exception is re-raised here (its
        transaction rolled back); ``trio.TooSlowError`` after ``timeout_s``, in which case a job
        that had not started yet is skipped. With ``shares_commit`` the job runs in a savepoint
        of one transaction with the other such jobs waiting when its turn comes (a group
        commit: the same atomicity, one commit for many small writes under load); ``fn`` must
        then not manage transactions itself.
        """
        result = await self._call(fn, commit=True, timeout_s=timeout_s, shares_commit=shares_commit)
        return result.unwrap()

    async def check_writable(self, *, timeout_s: float = 2.0) -> bool:
        """Whether the writer can take the write lock now (``BEGIN IMMEDIATE`` … ``ROLLBACK``)."""
        try:
            result = await self._call(_nothing, commit=False, timeout_s=timeout_s)
            result.unwrap()
        except Exception as exc:
            logger.warning("database not writable: %r", exc)
            return False
        return True

    @property
    def database(self) -> Database:
        """The database this writer stores into."""
        return self._database

    def close(self) -> None:
        """Stop accepting work; ``run()`` then stores everything already queued, within
        ``shutdown_timeout_s`` from now, and returns."""
        if not self._closed:
            with contextlib.suppress(RuntimeError):  # RuntimeError: outside trio, no deadline
                self._stop_by = trio.current_time() + self._shutdown_timeout_s
        self._closed = True
        self._send.close()

    def statistics(self) -> WriterStatistics:
        """Queue depth and write counters."""
        busy = self._busy.statistics()
        return WriterStatistics(
            queued=self._queued,
            **dataclasses.asdict(self._counts),
            closed=self._closed,
            busy_waits=busy.waits,
            busy_timeouts=busy.timeouts,
            busy_wait_s=busy.waited_s,
            up=not self._outage.down,
            down_since=self._outage.down_since,
            buffered=len(self._pending) if self._outage.down else 0,
            buffer_bound=self._outage.bound,
            records_dropped=self._outage.dropped_total,
        )

    async def _call(
        self,
        fn: Callable[[Connection], T],
        *,
        commit: bool,
        timeout_s: float,
        shares_commit: bool = False,
    ) -> outcome.Outcome[T]:
        """Send a job and wait for its outcome, bounded by ``timeout_s``."""
        reply_send, reply_receive = trio.open_memory_channel[outcome.Outcome[T]](1)
        # Closing our end on the way out tells the writer to skip a job nobody waits for.
        with reply_receive, trio.fail_after(timeout_s):
            await self._send.send(Job(fn, reply_send, commit, shares_commit))
            return await reply_receive.receive()

    # --- the actor ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the database, then store what arrives until ``close()``."""
        if self._started:
            raise RuntimeError("StorageWriter.run() may only be called once")
        self._started = True
        try:
            self._conn = await self._in_thread(self._open_sync)
        except BaseException as exc:
            self.close()
            self._take_queued()
            if self._pending:
                logger.error("%d records not stored: database unavailable", len(self._pending))
            self._receive.close()
            if isinstance(exc, (*DATABASE_ERRORS, SchemaTooNewError)):
                # Where it lives, what it is and who may write it: the operator's to fix.
                where = self._database.describe()
                raise StartupError(f"cannot open database {where}: {exc}") from exc
            raise
        try:
            task_status.started()
            with contextlib.suppress(_PastShutdownDeadline):
                await self._serve()
        finally:
            # Closing the send side first means nothing can slip into the inbox after the last
            # drain; callers still sending get ClosedResourceError instead of silent loss.
            self.close()
            with (
                trio.move_on_at(self._stop_by, shield=True),
                contextlib.suppress(_PastShutdownDeadline),
            ):
                await self._final_flush()
            if self._pending:
                logger.error(
                    "%d records not stored: shutdown deadline of %.0f s passed "
                    "(%d dropped earlier past the outage buffer)",
                    len(self._pending),
                    self._shutdown_timeout_s,
                    self._outage.dropped_total,
                )
            self._refuse_held()
            self._receive.close()
            with trio.move_on_after(self._shutdown_timeout_s, shield=True):
                await self._in_thread(self._close_sync)

    async def _serve(self) -> None:
        """Batch records and run jobs in arrival order until the inbox closes."""
        while True:
            if self._pending:
                message = await self._receive_until(self._pending_deadline)
                if message is None:
                    await self._flush_pending()
                    continue
            else:
                message = await self._receive_idle()
                if message is None:
                    return
            match message:
                case Records():
                    self._add_pending(message)
                    while len(self._pending) >= self._max_batch:
                        await self._flush_one_batch()
                case Job() if message.shares_commit:
                    await self._run_commit_group(message)
                case Job():
                    await self._flush_pending()
                    await self._run_job(message)

    def _add_pending(self, message: Records) -> None:
        """Add records to the pending batch; the first ones start its delay."""
        if not self._pending:
            self._pending_deadline = message.enqueued_at + self._max_delay_s
        self._pending.extend(message.records)

    async def _receive_or_none(self) -> WriterMessage | None:
        """The next message, or None once the inbox is closed and empty."""
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return None

    async def _receive_until(self, deadline: float) -> WriterMessage | None:
        """The next message if one arrives before ``deadline``; None on timeout or end."""
        # Drain without waiting first: a batch gathers whatever queued up during the last flush,
        # and a deadline already past then costs no sleep.
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            return None
        with trio.move_on_at(deadline):
            return await self._receive_or_none()
        return None

    async def _receive_idle(self) -> WriterMessage | None:
        """Wait for work, checkpointing the WAL once the inbox stays idle after writes."""
        if self._dirty:
            with trio.move_on_after(self._idle_checkpoint_s):
                return await self._receive_or_none()
            await self._checkpoint(final=False)
        return await self._receive_or_none()

    async def _flush_pending(self) -> None:
        """Store every pending record, in batches of at most ``max_batch``."""
        while self._pending:
            await self._flush_one_batch()

    async def _flush_one_batch(self) -> None:
        """Store the oldest ``max_batch`` pending records, retrying until they land; after an
        outage, store the whole buffer before anything else."""
        batch = self._pending[: self._max_batch]
        written_before = self._counts.rows_written
        await self._store(batch)
        # Only now: a cancelled or failed store leaves the records pending for the final flush.
        del self._pending[: len(batch)]
        self._queued -= len(batch)
        self._dirty = True
        if self._outage.down and not self._recovering:
            # The database is back: the records buffered meanwhile go first, in their order.
            self._recovering = True
            try:
                await self._flush_pending()
            finally:
                self._recovering = False
            self._outage.end(stored=self._counts.rows_written - written_before)
            held, self._held = self._held, []
            for job in held:
                await self._run_job(job)

    async def _store(self, batch: list[RequestRecord]) -> None:
        """Write one batch in one transaction; back off and retry on database errors."""
        conn = self._connection()
        delay = _BACKOFF_FIRST_S
        one_by_one = False
        while True:
            started = time.perf_counter()
            try:
                if one_by_one:
                    rejected = await self._in_thread(
                        functools.partial(write_rows_one_by_one, conn, batch, rows=self._rows)
                    )
                else:
                    await self._in_thread(
                        functools.partial(write_batch, conn, batch, rows=self._rows)
                    )
                    rejected = []
            except Exception as exc:
                self._counts.write_failed()
                if not one_by_one and is_row_error(exc):
                    logger.warning(
                        "batch of %d records failed (%r); retrying row by row", len(batch), exc
                    )
                    one_by_one = True
                    continue
                if not isinstance(exc, DATABASE_ERRORS):
                    logger.error("writing %d records failed", len(batch), exc_info=True)
                self._outage.begin(exc)
                self._refuse_held()
                if self._closed and trio.current_time() >= self._stop_by:
                    raise _PastShutdownDeadline from exc
                await self._buffer_until(min(trio.current_time() + delay, self._stop_by))
                delay = min(delay * 2, _BACKOFF_MAX_S)
                continue
            break
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        for record, error in rejected:
            logger.error("request %s rejected, not stored: %r", record.request_id, error)
        self._counts.batch_stored(len(batch), len(rejected), elapsed_ms)

    async def _buffer_until(self, deadline: float) -> None:
        """While the database is down: take arriving records into the bounded buffer until
        ``deadline`` (the next attempt to write); a job cuts the wait short, so it learns at once
        whether the database is back (it then runs after the buffer) or not (it is refused)."""
        while True:
            message = await self._receive_until(deadline)
            match message:
                case None:
                    # The deadline, or the inbox closed (shutdown): wait out the back-off.
                    await trio.sleep_until(deadline)
                    return
                case Records():
                    room = self._outage.room(len(self._pending))
                    self._pending.extend(message.records[:room])
                    dropped = max(len(message.records) - room, 0)
                    self._queued -= dropped
                    self._outage.drop(dropped)
                case Job():
                    self._held.append(message)
                    return

    def _refuse_held(self) -> None:
        """Refuse the jobs held for the last attempt: the database is still down."""
        held, self._held = self._held, []
        for job in held:
            job.refuse(self._outage.error())

    async def _run_commit_group(self, first: Job) -> None:
        """Run ``first`` and the commit-sharing jobs queued right behind it in one transaction.

        Records met on the way join the pending batch (stored first: a job still runs after
        every record queued before it); any other job ends the group and runs after it.
        """
        group = [first]
        after: Job | None = None
        while after is None and len(group) < self._max_batch:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            match message:
                case Records():
                    self._add_pending(message)
                case Job() if message.shares_commit:
                    group.append(message)
                case Job():
                    after = message
        with contextlib.ExitStack() as stack:
            if after is not None:
                # Closed even when cancelled before its turn, so its caller is not left waiting.
                stack.enter_context(after.reply)
            await self._flush_pending()
            await self._run_group(group)
            if after is not None:
                await self._run_job(after)

    async def _run_group(self, group: list[Job]) -> None:
        """Run jobs in savepoints of one transaction and answer each caller."""
        with contextlib.ExitStack() as replies:
            for job in group:
                replies.enter_context(job.reply)
            live = [job for job in group if not job.abandoned()]
            if not live:
                return
            conn = self._connection()
            fns = [job.fn for job in live]
            results: list[outcome.Outcome[Any]]
            try:
                results = await self._in_thread(
                    functools.partial(in_one_transaction_each_in_savepoint, conn, fns)
                )
            except Exception as exc:
                # Nothing of the group was kept: each caller gets the error (its own outcome,
                # as an outcome unwraps once).
                results = [outcome.Error(exc) for _ in live]
            self._dirty = True
            for job, result in zip(live, results, strict=True):
                # BrokenResourceError: the caller left while the job ran.
                with contextlib.suppress(trio.BrokenResourceError):
                    job.reply.send_nowait(result)

    async def _run_job(self, job: Job) -> None:
        """Run a job in its own transaction and answer its caller."""
        with job.reply:
            if job.abandoned():
                return
            conn = self._connection()
            result = await self._in_thread(
                functools.partial(
                    outcome.capture, in_immediate_transaction, conn, job.fn, commit=job.commit
                )
            )
            self._dirty = self._dirty or job.commit
            # BrokenResourceError: the caller left while the job ran.
            with contextlib.suppress(trio.BrokenResourceError):
                job.reply.send_nowait(result)

    async def _checkpoint(self, *, final: bool) -> None:
        """The database's upkeep once writes pause (SQLite: copy the WAL back into the file); a
        failure only costs WAL size."""
        conn = self._connection()
        done = await self._in_thread(
            functools.partial(self._database.checkpoint, conn, final=final)
        )
        if done:
            self._counts.checkpointed()
        self._dirty = False

    async def _final_flush(self) -> None:
        """Store everything accepted, refresh planner statistics, then truncate the WAL."""
        self._take_queued()
        await self._flush_pending()
        await self._checkpoint(final=True)

    def _take_queued(self) -> None:
        """Move the records left in the inbox to the pending batch; refuse the jobs left."""
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            match message:
                case Records():
                    self._pending.extend(message.records)
                case Job():
                    message.refuse(trio.ClosedResourceError("storage writer stopped"))

    # --- on the writer thread --------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """Run blocking SQLite work on a worker thread, one call at a time."""
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def _connection(self) -> Connection:
        """The open write connection."""
        if self._conn is None:
            raise RuntimeError("the storage writer is not running")
        return self._conn

    def _open_sync(self) -> Connection:
        """Open the write connection and bring the schema up to date."""
        conn = self._database.open_writer(self._busy)
        logger.info("storage writer opened %s", self._database.describe())
        return conn

    def _close_sync(self) -> None:
        """Close the write connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
