"""RequestLogger: prices each call's record, keeps live counters, batches records to the writer,
and fans them out to live subscribers (dashboard feed, terminal monitor).

Records are never dropped: when the inbox is full the caller waits. Subscribers are the opposite:
a slow one loses events (counted) so that it can never slow the gateway.

Prepaid credit: the cost of each priced call to a provider whose balance is tracked is added up
here and debited by one writer job at a time, covering every call logged since the previous one,
never a database write per call.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import trio

from actors.fanout import Fanout
from actors.recent_calls import RecentCalls
from actors.redis_link import default_instance_name
from proxy.pricing import Pricer, TokenCounts
from proxy.records import LiveCall, RequestRecord
from storage.outage import is_unavailable

log = logging.getLogger("llm_proxy.logger")

CREDIT_RETRY_S = 1.0

CreditCrossing = tuple[str, float, float | None]
"""A provider whose balance fell below its threshold: name, new balance, threshold (None: 0)."""
DebitCredit = Callable[[Mapping[str, float]], Awaitable[Sequence[CreditCrossing]]]
"""Subtracts each provider's charges from its balance; returns the providers that crossed."""
LowCredit = Callable[[str, float, float | None], None]
"""Told of a provider whose balance just fell below its threshold (must not block)."""
Observer = Callable[[RequestRecord], None]
"""Told of every record as it is accounted, priced (``/metrics``); must be quick, never blocks."""


@dataclasses.dataclass(frozen=True, slots=True)
class CreditLedger:
    """Prepaid credit: which providers' calls are charged, where the charges are debited, and
    who hears of a balance falling below its threshold."""

    tracks: Callable[[str], bool]
    debit: DebitCredit
    on_low_credit: LowCredit


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
        # Above the largest batch, so a fast subscriber never loses part of a burst.
        subscriber_queue: int = 1024,
        credit: CreditLedger | None = None,
        observer: Observer | None = None,
        instance: str | None = None,
        feed: Fanout[LiveCall] | None = None,
        outlet: Observer | None = None,
    ) -> None:
        """``instance`` names this process on the live feed (default ``host:pid``); ``feed`` is
        the live fan-out when another part relays into it too (the fleet feed), and ``outlet``
        is told of every record for the fleet (must be quick, never blocks)."""
        self._sink = sink
        self._pricer = pricer
        self._send, self._receive = trio.open_memory_channel[LoggedCall](inbox_size)
        self._max_batch = max_batch
        self._feed = feed if feed is not None else Fanout[LiveCall](subscriber_queue)
        self._instance = instance or default_instance_name()
        self._outlet = outlet
        self._recent = RecentCalls()
        self._records = self._errors = self._cancelled = 0
        self._prompt = self._completion = 0
        self._cost = 0.0
        self._credit = credit
        self._charges: dict[str, float] = {}
        self._charged = trio.Event()
        self._credit_waiting = False  # the last debit met a database outage
        self._draining = False
        self._observer = observer

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the inbox until :meth:`close`, then forward what is left and return."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._debit_credit)
            task_status.started()
            try:
                async with self._receive:
                    async for first in self._receive:
                        batch = [self._account(first)]
                        while len(batch) < self._max_batch:
                            try:
                                batch.append(self._account(self._receive.receive_nowait()))
                            except (trio.WouldBlock, trio.EndOfChannel):
                                break
                        await self._sink.write_requests(batch)
                self._feed.close()
            finally:
                # The last charges are debited, then the credit task ends.
                self._draining = True
                self._charged.set()

    def close(self) -> None:
        """No more records: :meth:`run` drains the inbox into the writer and returns."""
        self._send.close()

    async def record(self, record: RequestRecord, *, alias: str | None = None) -> None:
        """Log one call; waits while the inbox is full."""
        await self._send.send(LoggedCall(record, alias))

    def record_nowait(self, record: RequestRecord, *, alias: str | None = None) -> None:
        """Log one call, or raise ``trio.WouldBlock`` when the inbox is full."""
        self._send.send_nowait(LoggedCall(record, alias))

    def subscribe(self) -> AbstractContextManager[trio.MemoryReceiveChannel[LiveCall]]:
        """A bounded feed of logged records, for as long as the block runs."""
        return self._feed.subscribe()

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
            subscribers=self._feed.subscribers,
            events_dropped=self._feed.dropped,
        )

    def recent_calls(self) -> tuple[int, int]:
        """(calls, errors) logged in the last minute, counted with the totals."""
        return self._recent.totals(trio.current_time())

    def next_drop(self) -> float | None:
        """When (``trio.current_time()``) the last minute's count next falls; None when empty."""
        return self._recent.next_drop(trio.current_time())

    def _account(self, call: LoggedCall) -> RequestRecord:
        record = self._priced(call)
        self._records += 1
        self._recent.add(trio.current_time(), error=record.status == "error")
        if record.status == "error":
            self._errors += 1
        elif record.status == "cancelled":
            self._cancelled += 1
        self._prompt += record.prompt_tokens or 0
        self._completion += record.completion_tokens or 0
        self._cost += record.cost_usd or 0.0
        cost = record.cost_usd
        provider = record.provider
        if cost and provider is not None and self._credit and self._credit.tracks(provider):
            self._charges[provider] = self._charges.get(provider, 0.0) + cost
            self._charged.set()
        if self._observer is not None:
            # A metrics bug must not lose the record.
            try:
                self._observer(record)
            except Exception:
                log.exception("request log observer failed")
        if self._feed.subscribers:
            # Copied with this instance's name only while someone watches.
            self._feed.publish(LiveCall.of(record, self._instance))
        if self._outlet is not None:
            try:
                self._outlet(record)
            except Exception:
                log.exception("request log outlet failed")
        return record

    def _priced(self, call: LoggedCall) -> RequestRecord:
        return priced_record(self._pricer, call.record, call.alias)

    async def _debit_credit(self) -> None:
        """Debit what was charged, one writer job at a time, until the logger has drained."""
        while True:
            await self._charged.wait()
            self._charged = trio.Event()
            charges, self._charges = self._charges, {}
            if charges and self._credit is not None:
                await self._settle(self._credit, charges)
            if self._draining and not self._charges:
                return

    async def _settle(self, credit: CreditLedger, charges: dict[str, float]) -> None:
        try:
            crossed = await credit.debit(charges)
        except Exception as exc:
            if self._draining:
                log.exception("debiting provider credit failed at shutdown; lost: %s", charges)
                return
            if not is_unavailable(exc):
                log.exception("debiting provider credit failed; retrying in %g s", CREDIT_RETRY_S)
            elif not self._credit_waiting:
                # The writer's own line says the database is down; the charges add up meanwhile.
                log.warning("provider credit: database unavailable; debited once it answers")
            self._credit_waiting = is_unavailable(exc)
            for provider, cost in charges.items():
                self._charges[provider] = self._charges.get(provider, 0.0) + cost
            await trio.sleep(CREDIT_RETRY_S)
            self._charged.set()
            return
        self._credit_waiting = False
        for provider, balance, threshold in crossed:
            log.warning(
                "provider=%s prepaid credit is low: balance %.4f USD fell below %.4f USD",
                provider,
                balance,
                threshold or 0.0,
            )
            # A subscriber's bug must not stop the debits.
            try:
                credit.on_low_credit(provider, balance, threshold)
            except Exception:
                log.exception("provider=%s low-credit subscriber failed", provider)


def priced_record(pricer: Pricer, record: RequestRecord, alias: str | None) -> RequestRecord:
    """``record`` with its cost, when it has usage and no cost yet (one already priced, e.g. by
    the call for its budget, is not priced twice); unpriced when the model has no price."""
    if record.cost_usd is not None or not record.has_usage or record.provider is None:
        return record
    tokens = TokenCounts(
        prompt=record.prompt_tokens or 0,
        completion=record.completion_tokens or 0,
        cached=record.cached_tokens or 0,
        cache_write=record.cache_write_tokens or 0,
    )
    try:
        cost = pricer.cost(
            provider=record.provider,
            upstream_model=record.upstream_model or record.model,
            alias=alias,
            tokens=tokens,
        )
    except Exception:
        # A pricing-table surprise must not lose the record; it is stored unpriced.
        log.exception("pricing failed for model %r", record.upstream_model)
        cost = None
    return dataclasses.replace(record, cost_usd=cost) if cost is not None else record
