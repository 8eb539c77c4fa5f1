"""FleetLimiter: the rate limits of :class:`actors.rate_limiter.RateLimiter`, exact across every
process and host sharing one Redis (issue 18).

The buckets live in Redis and one Lua script (:mod:`actors.fleet_limiter_script`) decides on
Redis' clock, atomically, so 90 calls spread over three processes against 30 requests per minute
let exactly 30 through, whatever the hosts' clocks say. Callers ``await reserve(...)``; the
admission goes into a bounded inbox and the actor's task sends everything queued by then (up to
:data:`BATCH_MAX`) with the pending settles in one script call: one round trip per scheduling
round, not per call. Settles never wait: they are netted per client in memory and ride on the
next round trip.

While Redis is down (:class:`actors.redis_link.RedisDown`) the ``on_redis_down`` policy applies:
"local" decides with this process's own :class:`RateLimiter` (per-process limits, no call fails
for the outage), "refuse" answers 503. Each reservation remembers which limiter granted it and
settles there. The first round trip that succeeds again decides fleet-wide again; what the local
buckets spent is not carried over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Final

import coredis.exceptions
import trio

from actors.fleet_limiter_script import FLEET_LIMIT_SCRIPT
from actors.rate_limiter import ClientLimits, RateLimiter, RateLimiterStatistics
from actors.redis_link import KEY_PREFIX, Client, RedisDown, RedisLink
from proxy.errors import ServiceUnavailable, rate_limit_store_unavailable
from proxy.rate_limit import RateDecision, TokenBucket, TokenReservation, allowing, denial

__all__ = ["BATCH_MAX", "FleetLimiter"]

log = logging.getLogger("llm_proxy.fleet_limiter")

# Admissions carried by one round trip at most: bounds the script's run inside Redis (Redis runs
# nothing else meanwhile) and the size of one request.
BATCH_MAX: Final = 256
# Admissions waiting for the actor's task at most; callers past it wait to enter (backpressure).
INBOX_SIZE: Final = 1024
# Flushing the last settles at close: bounded, so a Redis gone quiet cannot hold a shutdown.
FLUSH_TIMEOUT_S: Final = 1.0

_GLOBAL_KEY: Final = f"{KEY_PREFIX}rl:global"
_SCRIPT_DIGEST: Final = hashlib.sha1(FLEET_LIMIT_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _requests_key(client: str) -> str:
    return f"{KEY_PREFIX}rl:requests:{client}"


def _tokens_key(client: str) -> str:
    return f"{KEY_PREFIX}rl:tokens:{client}"


class _Pending:
    """One admission (or peek) waiting for its batch's answer."""

    __slots__ = ("client", "decision", "done", "error", "gone", "limits", "peek", "tokens")

    def __init__(self, client: str, limits: ClientLimits, tokens: int, *, peek: bool) -> None:
        self.client = client
        self.limits = limits
        self.tokens = tokens
        self.peek = peek
        self.decision: RateDecision | None = None
        self.error: ServiceUnavailable | None = None
        self.gone = False  # its caller was cancelled while waiting
        self.done = trio.Event()


class FleetLimiter:
    """Fleet-wide token buckets in Redis, decided in batches; this process's own buckets while
    Redis is down (or a 503, as ``on_redis_down`` says)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        global_requests_per_minute: int = 0,
        local: RateLimiter | None = None,
        batch_max: int = BATCH_MAX,
    ) -> None:
        self._link = link
        self._global_rpm = global_requests_per_minute
        self._local = local or RateLimiter(global_requests_per_minute=global_requests_per_minute)
        self._batch_max = batch_max
        self._send, self._receive = trio.open_memory_channel[_Pending | None](INBOX_SIZE)
        # Per client: (tokens per minute the reservations were taken under, tokens to give back
        # (> 0) or to charge (< 0)), sent with the next round trip.
        self._settles: dict[str, tuple[int, int]] = {}
        self._woken = False  # a wake-up for the settles is in the inbox already
        self._closed = False
        self._allowed = self._denied = self._reserved = 0
        self._round_trips = self._batched = self._largest = 0
        self._locally = self._refused = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Decide batches until :meth:`close`, then the ones queued by then and the last
        settles; the local limiter's sweep runs alongside."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._local.run)
            task_status.started()
            async with self._receive:
                async for first in self._receive:
                    batch = [first]
                    while len(batch) < self._batch_max:
                        try:
                            batch.append(self._receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    await self._decide(batch)
            with trio.move_on_after(FLUSH_TIMEOUT_S, shield=True):
                await self._decide([])
            self._local.close()

    def close(self) -> None:
        """Stop taking admissions (later ones are decided locally); :meth:`run` decides what
        was queued, sends the pending settles and returns."""
        self._closed = True
        self._send.close()

    async def reserve(self, client: str, limits: ClientLimits, tokens: int = 0) -> RateDecision:
        """Decide one call fleet-wide (a denial is a 429, never a wait for budget); raises
        :class:`ServiceUnavailable` while Redis is down under ``on_redis_down = "refuse"``."""
        if self._unlimited(limits):
            # Nothing to share: no buckets anywhere, so no round trip.
            return await self._local.reserve(client, limits, tokens)
        if self._closed or not self._link.up:
            return await self._without_redis(client, limits, tokens)
        return await self._ask(_Pending(client, limits, max(1, tokens), peek=False))

    def settle(self, reservation: TokenReservation, used: int | None) -> None:
        """Settle a call's reservation where it was taken; a fleet one is netted here and sent
        with the next round trip (never waits for Redis)."""
        if not reservation.fleet:
            self._local.settle(reservation, used)
            return
        if reservation.settled:
            return
        reservation.settled = True
        self._reserved -= reservation.tokens
        if used is None or used == reservation.tokens:
            return
        _, delta = self._settles.get(reservation.client, (0, 0))
        self._settles[reservation.client] = (
            reservation.per_minute,
            delta + reservation.tokens - used,
        )
        if not self._woken:
            try:
                self._send.send_nowait(None)
                self._woken = True
            except trio.WouldBlock:
                pass  # the inbox is full: a batch is coming anyway, and takes the settles along
            except trio.ClosedResourceError:
                pass  # closing: run sends the pending settles as it finishes

    async def peek(self, client: str, limits: ClientLimits) -> RateDecision:
        """The fleet-wide decision a request would get now, taking nothing; this process's own
        buckets while Redis is down (headers only inform: a peek is never refused)."""
        if self._unlimited(limits) or self._closed or not self._link.up:
            await trio.lowlevel.checkpoint()
            return self._local.peek_nowait(client, limits)
        return await self._ask(_Pending(client, limits, 1, peek=True))

    def statistics(self) -> RateLimiterStatistics:
        """Fleet-wide and local decisions together, plus the round trips and what they carried."""
        local = self._local.statistics()
        return RateLimiterStatistics(
            buckets=local.buckets,
            allowed=self._allowed + local.allowed,
            denied=self._denied + local.denied,
            tokens_reserved=self._reserved + local.tokens_reserved,
            round_trips=self._round_trips,
            batched_admissions=self._batched,
            largest_batch=self._largest,
            decided_locally=self._locally,
            refused_store_down=self._refused,
        )

    def _unlimited(self, limits: ClientLimits) -> bool:
        return (
            limits.requests_per_minute <= 0
            and limits.tokens_per_minute <= 0
            and self._global_rpm <= 0
        )

    async def _ask(self, pending: _Pending) -> RateDecision:
        try:
            await self._send.send(pending)
        except trio.ClosedResourceError:
            return await self._without_redis(pending.client, pending.limits, pending.tokens)
        try:
            await pending.done.wait()
        except trio.Cancelled:
            # Its caller left: the actor skips it if undecided, and gives back what it reserved
            # if decided (here, or when the answer comes).
            pending.gone = True
            self._give_back(pending)
            raise
        if pending.error is not None:
            raise pending.error
        assert pending.decision is not None  # set with done
        return pending.decision

    async def _without_redis(self, client: str, limits: ClientLimits, tokens: int) -> RateDecision:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._link.refuses and not self._closed:
            self._refused += 1
            raise rate_limit_store_unavailable()
        self._locally += 1
        # No checkpoint between check and take: the local limiter stays exact in this process.
        decision = self._local.reserve_nowait(client, limits, tokens)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return decision

    def _give_back(self, pending: _Pending) -> None:
        decision = pending.decision
        if decision is not None and decision.reservation is not None:
            self.settle(decision.reservation, 0)

    async def _decide(self, batch: list[_Pending | None]) -> None:
        """One round trip for the batch's live admissions and the pending settles."""
        live = [pending for pending in batch if pending is not None and not pending.gone]
        settles, self._settles, self._woken = self._settles, {}, False
        if not live and not settles:
            return
        keys = [_GLOBAL_KEY, *map(_tokens_key, settles)]
        args: list[int] = [self._global_rpm, len(settles), len(live)]
        for per_minute, delta in settles.values():
            args += (per_minute, delta)
        for pending in live:
            limits = pending.limits
            keys += (_requests_key(pending.client), _tokens_key(pending.client))
            args += (
                limits.requests_per_minute,
                limits.tokens_per_minute,
                pending.tokens,
                int(pending.peek),
            )
        try:
            reply = await self._link.call(lambda client: _run_script(client, keys, args))
        except RedisDown:
            # A timed-out round trip may have run: its settles are dropped rather than risk
            # charging twice (an outage that lost Redis lost the buckets they belong to anyway).
            self._decide_locally(live)
            return
        except coredis.exceptions.RedisError:
            # Redis answered with an error (a script refused, out of memory): not an outage the
            # link's probe would see, so said every time; the calls still get an answer.
            log.exception("fleet rate limits: the round trip failed; deciding in this process")
            self._decide_locally(live)
            return
        self._round_trips += 1
        self._batched += len(live)
        self._largest = max(self._largest, len(live))
        self._answer(live, reply)

    def _answer(self, live: list[_Pending], reply: object) -> None:
        assert isinstance(reply, list)
        now = float(reply[0])
        for n, pending in enumerate(live):
            allowed, requests, tokens, global_left = reply[1 + 4 * n : 5 + 4 * n]
            decision = self._decision(pending, now, allowed == 1, requests, tokens, global_left)
            pending.decision = decision
            if not pending.peek:
                if decision.allowed:
                    self._allowed += 1
                    if decision.reservation is not None:
                        self._reserved += decision.reservation.tokens
                else:
                    self._denied += 1
            if pending.gone:
                self._give_back(pending)
            pending.done.set()

    def _decision(
        self,
        pending: _Pending,
        now: float,
        allowed: bool,
        requests_left: str,
        tokens_left: str,
        global_left: str,
    ) -> RateDecision:
        """The script's answer as the same :class:`RateDecision` the in-memory limiter gives."""
        limits = pending.limits
        requests = _bucket(limits.requests_per_minute, requests_left, now)
        tokens = _bucket(limits.tokens_per_minute, tokens_left, now)
        global_requests = _bucket(self._global_rpm, global_left, now)
        reported = requests or global_requests
        if allowed and not pending.peek:
            reservation = None
            if tokens is not None:
                reservation = TokenReservation(
                    pending.client, pending.tokens, limits.tokens_per_minute, fleet=True
                )
            return allowing(now, reported, tokens, reservation)
        refused = denial(now, requests, tokens, global_requests, pending.tokens)
        if refused is not None or allowed:
            return refused or allowing(now, reported, tokens)
        # Denied by the script on a float's width that this side rounds the other way.
        return dataclasses.replace(
            allowing(now, reported, tokens),
            allowed=False,
            retry_after_s=0.001,
            reason="client requests" if requests is not None else "global requests",
        )

    def _decide_locally(self, live: list[_Pending]) -> None:
        for pending in live:
            if pending.gone:
                continue
            if pending.peek:
                pending.decision = self._local.peek_nowait(pending.client, pending.limits)
            elif self._link.refuses:
                self._refused += 1
                pending.error = rate_limit_store_unavailable()
            else:
                self._locally += 1
                pending.decision = self._local.reserve_nowait(
                    pending.client, pending.limits, pending.tokens
                )
            pending.done.set()


def _bucket(per_minute: int, left: str, now: float) -> TokenBucket | None:
    """A bucket as the script left it at ``now`` (None: no such limit)."""
    if per_minute <= 0 or not left:
        return None
    capacity = float(per_minute)
    return TokenBucket(
        capacity=capacity, rate_per_s=capacity / 60.0, tokens=float(left), updated=now
    )


async def _run_script(client: Client, keys: list[str], args: list[int]) -> object:
    """The script by its digest; loaded first when this Redis does not know it (a new or
    restarted Redis), then run again."""
    try:
        return await client.evalsha(_SCRIPT_DIGEST, keys=keys, args=args)
    except coredis.exceptions.NoScriptError:
        await client.script_load(FLEET_LIMIT_SCRIPT)
        return await client.evalsha(_SCRIPT_DIGEST, keys=keys, args=args)
