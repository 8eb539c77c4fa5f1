"""RequestLogger: prices each call's record, keeps live counters, batches records to the writer,
and fans them out to live subscribers (dashboard feed, terminal monitor).

Records are never dropped: when the inbox is full the caller waits. Subscribers are the opposite:
a slow one loses events (counted) so that it can never slow the gateway.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import trio

from proxy.pricing import Pricer, TokenCounts
from proxy.records import RequestRecord

log = logging.getLogger("llm_proxy.logger")


class RecordSink(Protocol):
    """Where batches go: the StorageWriter."""

    async def write_requests(self, records: Sequence[RequestRecord]) -> None:
        """Accept a batch for durable storage (waits while the sink is full)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LoggedCall:
    """One call to log: its record and the alias it was asked by (for price overrides)."""

    record: RequestRecord
    alias: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LoggerStatistics:
    """Live counters since start."""

    queued: int
    records: int
    errors: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    subscribers: int
    events_dropped: int


class RequestLogger:
    """The single path from a finished call to storage and to live subscribers."""

    def __init__(
        self,
        sink: RecordSink,
        pricer: Pricer,
        *,
        inbox_size: int = 4096,
        max_batch: int = 500,
        subscriber_queue: int = 256,
    ) -> None:
        self._sink = sink
        self.pricer = pricer
        self._send, self._receive = trio.open_memory_channel[LoggedCall](inbox_size)
        self._max_batch = max_batch
        self._subscriber_queue = subscriber_queue
        self._subscribers: set[trio.MemorySendChannel[RequestRecord]] = set()
        self._records = self._errors = self._cancelled = 0
        self._prompt = self._completion = 0
        self._cost = 0.0
        self._dropped = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the inbox until :meth:`close`, then forward what is left and return."""
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                batch = [self._account(first)]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._account(self._receive.receive_nowait()))
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._sink.write_requests(batch)
        for subscriber in list(self._subscribers):
            subscriber.close()

    def close(self) -> None:
        """No more records: :meth:`run` drains the inbox into the writer and returns."""
        self._send.close()

    async def record(self, record: RequestRecord, *, alias: str | None = None) -> None:
        """Log one call; waits while the inbox is full."""
        await self._send.send(LoggedCall(record, alias))

    def record_nowait(self, record: RequestRecord, *, alias: str | None = None) -> None:
        """Log one call, or raise ``trio.WouldBlock`` when the inbox is full."""
        self._send.send_nowait(LoggedCall(record, alias))

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[RequestRecord]]:
        """A bounded feed of logged records, for as long as the block runs."""
        send, receive = trio.open_memory_channel[RequestRecord](self._subscriber_queue)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def statistics(self) -> LoggerStatistics:
        """Counters since start."""
        return LoggerStatistics(
            queued=self._receive.statistics().current_buffer_used,
            records=self._records,
            errors=self._errors,
            cancelled=self._cancelled,
            prompt_tokens=self._prompt,
            completion_tokens=self._completion,
            cost_usd=self._cost,
            subscribers=len(self._subscribers),
            events_dropped=self._dropped,
        )

    def _account(self, call: LoggedCall) -> RequestRecord:
        record = self._priced(call)
        self._records += 1
        if record.status == "error":
            self._errors += 1
        elif record.status == "cancelled":
            self._cancelled += 1
        self._prompt += record.prompt_tokens or 0
        self._completion += record.completion_tokens or 0
        self._cost += record.cost_usd or 0.0
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(record)
            except trio.WouldBlock:
                self._dropped += 1
            except trio.ClosedResourceError:
                self._subscribers.discard(subscriber)
        return record

    def _priced(self, call: LoggedCall) -> RequestRecord:
        record = call.record
        if record.cost_usd is not None or not record.has_usage or record.provider is None:
            return record
        tokens = TokenCounts(
            prompt=record.prompt_tokens or 0,
            completion=record.completion_tokens or 0,
            cached=record.cached_tokens or 0,
        )
        try:
            cost = self.pricer.cost(
                provider=record.provider,
                upstream_model=record.upstream_model or record.model,
                alias=call.alias,
                tokens=tokens,
            )
        except Exception:
            # A pricing-table surprise must not lose the record; it is stored unpriced.
            log.exception("pricing failed for model %r", record.upstream_model)
            cost = None
        return dataclasses.replace(record, cost_usd=cost) if cost is not None else record
