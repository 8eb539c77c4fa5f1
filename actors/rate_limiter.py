"""RateLimiter: per-client request and token buckets plus one global bucket (design §2, §3 step 3).

Tokens per minute are reserved when a call is admitted (an estimate of its prompt plus the most it
may answer) and settled when it ends (:meth:`RateLimiter.settle`): concurrent calls cannot spend
the same budget twice, and what a call used beyond its estimate is charged as a debt that later
calls wait out. A fleet-wide limiter (Redis) keeps the same two steps, reserve and settle.

Decisions are plain synchronous calls on the trio thread rather than messages to an inbox: no
task can run between checking the buckets and taking from them, so N simultaneous requests
against a budget of M let exactly M through, and a decision costs no channel round trip. The
actor's own task only sweeps idle buckets, so memory stays bounded however many clients call.
"""

from __future__ import annotations

import dataclasses

import trio

from proxy.rate_limit import RateDecision, TokenBucket, TokenReservation, allowing, denial

# Yield to other tasks every this many buckets, so a sweep over many clients never stalls requests.
_SWEEP_BATCH = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ClientLimits:
    """One client's limits, as the caller resolved them (defaults applied); 0 = unlimited."""

    requests_per_minute: int
    tokens_per_minute: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """Per-client buckets held in memory (the global one is not counted) and decisions so far."""

    buckets: int
    allowed: int
    denied: int
    tokens_reserved: int = 0  # by calls admitted and not settled yet
    # Fleet-wide limits (Redis) only; zero for the in-memory limiter.
    round_trips: int = 0  # to Redis, each carrying a batch of admissions and settles
    batched_admissions: int = 0  # admissions (and peeks) carried by those round trips
    largest_batch: int = 0
    decided_locally: int = 0  # by this process's own buckets while Redis was down
    refused_store_down: int = 0  # refused with 503 while Redis was down (on_redis_down "refuse")


class RateLimiter:
    """Token buckets per client and for the whole gateway; answers at once, never queues."""

    def __init__(self, *, global_requests_per_minute: int = 0, idle_s: float = 600.0) -> None:
        self._global_rpm = global_requests_per_minute
        self._global: TokenBucket | None = None  # made at the first decision, on trio's clock
        self._idle_s = idle_s
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        self._closed = trio.Event()
        self._allowed = self._denied = 0
        self._reserved = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep idle buckets periodically until :meth:`close`."""
        task_status.started()
        # Half the idle time between sweeps: an idle bucket lives at most 1.5 × idle_s.
        while True:
            with trio.move_on_after(self._idle_s / 2):
                await self._closed.wait()
                return
            await self._sweep()

    def close(self) -> None:
        """Stop sweeping; :meth:`run` returns. Decisions keep working for requests still running."""
        self._closed.set()

    def reserve_nowait(self, client: str, limits: ClientLimits, tokens: int = 0) -> RateDecision:
        """Decide one call; when allowed, take a request from every bucket that applies and
        reserve ``tokens`` (at least one) from the client's tokens-per-minute budget.

        The reservation rides on the decision; the caller settles it with :meth:`settle`.
        """
        now = trio.current_time()
        requests = self._bucket(self._requests, client, limits.requests_per_minute, now, keep=True)
        budget = self._bucket(self._tokens, client, limits.tokens_per_minute, now, keep=True)
        amount = max(1, tokens)
        denial = self._denial(now, requests, budget, amount)
        if denial is not None:
            self._denied += 1
            return denial
        self._allowed += 1
        for bucket in (requests, self._global):
            if bucket is not None:
                bucket.take(now)  # cannot fail: _denial saw a whole token in each
        reservation = None
        if budget is not None:
            budget.take(now, amount)  # cannot fail either: _denial saw the amount there
            reservation = TokenReservation(client, amount, limits.tokens_per_minute)
            self._reserved += amount
        return allowing(now, requests or self._global, budget, reservation)

    async def reserve(self, client: str, limits: ClientLimits, tokens: int = 0) -> RateDecision:
        """:meth:`reserve_nowait` plus a checkpoint; never waits for budget (a denial is a 429)."""
        # Checkpoint before deciding and shield the one after, trio's rule for operations that
        # succeed: a cancelled caller takes no budget, and a caller that took budget hears so.
        await trio.lowlevel.checkpoint_if_cancelled()
        decision = self.reserve_nowait(client, limits, tokens)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return decision

    def settle(self, reservation: TokenReservation, used: int | None) -> None:
        """Settle a call's reservation with the tokens it ``used``: give back what it did not use,
        charge what it used beyond (the budget may go into debt: later calls wait).

        ``used`` None (unknown: an answer without usage, a stream cut after it started) keeps the
        reservation as the charge. A second settlement of the same reservation does nothing.
        """
        if reservation.settled:
            return
        reservation.settled = True
        self._reserved -= reservation.tokens
        if used is None or used == reservation.tokens:
            return
        now = trio.current_time()
        bucket = self._tokens.get(reservation.client)
        if bucket is None:
            # Swept as full and idle during a long call (or the limit was lifted meanwhile): a
            # refund has nowhere to go, a charge starts from a full bucket again.
            if used <= reservation.tokens:
                return
            bucket = TokenBucket.full(reservation.per_minute, now)
            self._tokens[reservation.client] = bucket
        if used < reservation.tokens:
            bucket.refund(now, reservation.tokens - used)
        else:
            bucket.charge(now, used - reservation.tokens)

    async def peek(self, client: str, limits: ClientLimits) -> RateDecision:
        """:meth:`peek_nowait` (the shape fleet-wide limits need: they ask Redis)."""
        return self.peek_nowait(client, limits)

    def peek_nowait(self, client: str, limits: ClientLimits) -> RateDecision:
        """The decision a request would get now, taking nothing (headers for GET /v1/models)."""
        now = trio.current_time()
        requests = self._bucket(self._requests, client, limits.requests_per_minute, now, keep=False)
        budget = self._bucket(self._tokens, client, limits.tokens_per_minute, now, keep=False)
        denial = self._denial(now, requests, budget, 1)
        return denial or allowing(now, requests or self._global, budget)

    def statistics(self) -> RateLimiterStatistics:
        """Buckets held and decisions since start."""
        return RateLimiterStatistics(
            buckets=len(self._requests) + len(self._tokens),
            allowed=self._allowed,
            denied=self._denied,
            tokens_reserved=self._reserved,
        )

    def _bucket(
        self, table: dict[str, TokenBucket], client: str, per_minute: int, now: float, *, keep: bool
    ) -> TokenBucket | None:
        """The client's bucket under ``per_minute`` (created or resized), or None when unlimited.

        With ``keep`` false nothing is stored, so a peek neither allocates nor changes a bucket.
        """
        if per_minute <= 0:
            if keep:
                table.pop(client, None)
            return None
        bucket = table.get(client)
        if bucket is None:
            bucket = TokenBucket.full(per_minute, now)
        elif bucket.capacity != per_minute:
            # An admin changed the limit since the last call.
            bucket = bucket.resized(per_minute, now)
        else:
            return bucket
        if keep:
            table[client] = bucket
        return bucket

    def _denial(
        self, now: float, requests: TokenBucket | None, tokens: TokenBucket | None, amount: int
    ) -> RateDecision | None:
        """:func:`denial` against this limiter's global bucket (made at the first decision)."""
        if self._global is None and self._global_rpm > 0:
            self._global = TokenBucket.full(self._global_rpm, now)
        return denial(now, requests, tokens, self._global, amount)

    async def _sweep(self) -> None:
        """Drop buckets that are full and untouched for idle_s: a full bucket equals a new one."""
        for table in (self._requests, self._tokens):
            for n, (client, bucket) in enumerate(list(table.items())):
                if n and n % _SWEEP_BATCH == 0:
                    await trio.lowlevel.checkpoint()
                now = trio.current_time()
                if (
                    table.get(client) is bucket  # not replaced (resized) while we yielded
                    and now - bucket.updated >= self._idle_s
                    and bucket.seconds_until_full(now) == 0
                ):
                    del table[client]
