"""What the StorageWriter's inbox carries, and the snapshot of its work it reports."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import outcome
import trio

from proxy.records import RequestRecord
from storage.sql import Connection

__all__ = ["Job", "Records", "WriterMessage", "WriterStatistics"]


@dataclasses.dataclass(frozen=True, slots=True)
class WriterStatistics:
    """A snapshot of the writer for ``/metrics`` and health checks."""

    queued: int
    """Records accepted but not stored yet."""
    rows_written: int
    rows_rejected: int
    """Records the database refused (constraint or type errors), logged and dropped."""
    batches: int
    last_batch_rows: int
    last_flush_ms: float
    max_flush_ms: float
    flush_ms_total: float
    """Time spent storing batches since start (``/metrics``: over ``batches``, the mean)."""
    write_errors: int
    """Failed transaction attempts (each was retried)."""
    checkpoints: int
    closed: bool
    busy_waits: int = 0
    """Waits for the write lock another process held (several workers share the file)."""
    busy_timeouts: int = 0
    """Of those, the ones that reached the busy timeout (the write was retried)."""
    busy_wait_s: float = 0.0
    """Time spent in those waits."""
    up: bool = True
    """Whether the last write reached the database (False during an outage)."""
    down_since: float | None = None
    """Wall-clock time (``time.time()``) the current outage began; None while up."""
    buffered: int = 0
    """Records held in memory during the outage, waiting for the database."""
    buffer_bound: int = 0
    """The most records an outage may buffer (``[storage] outage_buffer_records``)."""
    records_dropped: int = 0
    """Records dropped past that bound, since start (never stored)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Records:
    """Records to store; ``enqueued_at`` starts the clock of the batch they open."""

    records: tuple[RequestRecord, ...]
    enqueued_at: float


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A function to run in its own transaction, answered on a one-shot channel."""

    fn: Callable[[Connection], Any]
    reply: trio.MemorySendChannel[outcome.Outcome[Any]]
    commit: bool
    shares_commit: bool = False
    """May run in a savepoint of one transaction with the other such jobs queued with it."""

    def refuse(self, error: Exception) -> None:
        """Answer with ``error`` without running the job."""
        with self.reply, contextlib.suppress(trio.BrokenResourceError):
            self.reply.send_nowait(outcome.Error(error))

    def abandoned(self) -> bool:
        """Whether the caller timed out or was cancelled before the job's turn."""
        return self.reply.statistics().open_receive_channels == 0


WriterMessage = Records | Job
