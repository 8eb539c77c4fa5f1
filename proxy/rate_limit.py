"""Token-bucket arithmetic for rate limits, and OpenAI's formats for the limit headers.

Pure: the caller passes the time in, so the same code runs under trio's clock, a mock clock
in tests, or plain numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Refill sums floats (elapsed * rate), so a bucket waited on for exactly the computed time may hold
# 0.9999999999 tokens; the tolerance makes "wait seconds_until, then take" always succeed.
_EPSILON = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """capacity = per-minute limit (the burst), refilled continuously at limit/60 per second."""

    capacity: float
    rate_per_s: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> TokenBucket:
        """A bucket for a per-minute limit (> 0), holding its whole burst."""
        if per_minute <= 0:
            raise ValueError(f"a token bucket needs a positive limit, not {per_minute}")
        burst = float(per_minute)
        return cls(capacity=burst, rate_per_s=burst / 60.0, tokens=burst, updated=now)

    def refill(self, now: float) -> None:
        """Add what has dripped in since the last update (never above capacity)."""
        if now > self.updated:
            self.tokens = self.available(now)
            self.updated = now

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative while in debt), without changing it."""
        elapsed = max(0.0, now - self.updated)
        return min(self.capacity, self.tokens + elapsed * self.rate_per_s)

    def take(self, now: float, amount: float = 1.0) -> bool:
        """Take ``amount`` if it is all there; otherwise take nothing and say so."""
        self.refill(now)
        if self.tokens + _EPSILON < amount:
            return False
        self.tokens -= amount
        return True

    def charge(self, now: float, amount: float) -> None:
        """Take ``amount`` unconditionally: a cost known only after the call may leave a debt."""
        self.refill(now)
        self.tokens -= amount

    def refund(self, now: float, amount: float) -> None:
        """Give back ``amount`` taken earlier and not used (never above capacity)."""
        self.refill(now)
        self.tokens = min(self.capacity, self.tokens + amount)

    def seconds_until(self, now: float, amount: float = 1.0) -> float:
        """Seconds until ``amount`` is available (0 if it is; infinite if above capacity)."""
        missing = amount - self.available(now)
        if missing <= _EPSILON:
            return 0.0
        if amount > self.capacity + _EPSILON:
            return math.inf
        return missing / self.rate_per_s

    def seconds_until_full(self, now: float) -> float:
        """Seconds until the bucket holds its whole burst again."""
        missing = self.capacity - self.available(now)
        return 0.0 if missing <= _EPSILON else missing / self.rate_per_s

    def resized(self, per_minute: int, now: float) -> TokenBucket:
        """The bucket under a new limit, with the same fraction of its burst used (or owed)."""
        # Scaling keeps the fraction: a client that used half of 60 has used half of 600 after
        # an admin raises its limit, instead of getting a fresh burst or losing its budget.
        resized = TokenBucket.full(per_minute, now)
        resized.tokens = self.available(now) * (resized.capacity / self.capacity)
        return resized


class TokenReservation:
    """Tokens taken from a client's tokens-per-minute budget when its call was admitted.

    The call settles it once it knows what it used (:meth:`RateLimiter.settle`): the unused part
    is given back, usage beyond it charged. A reservation settles once.
    """

    __slots__ = ("client", "fleet", "per_minute", "settled", "tokens")

    def __init__(self, client: str, tokens: int, per_minute: int, *, fleet: bool = False) -> None:
        self.client = client
        self.tokens = tokens
        self.per_minute = per_minute  # the limit it was taken under
        # Taken from the fleet's buckets in Redis (else from this process's): it settles there.
        self.fleet = fleet
        self.settled = False

    def __repr__(self) -> str:
        return f"TokenReservation({self.client!r}, {self.tokens}, settled={self.settled})"


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer to one request against the rate limits, with what the headers report."""

    allowed: bool
    limit: int | None  # requests per minute of the bucket reported in headers; None = unlimited
    remaining: int  # whole requests left after this decision
    reset_s: float  # seconds until that bucket is full again
    retry_after_s: float  # 0.0 when allowed; else seconds until a request would pass (inf: never)
    # When denied: "client requests", "client tokens", "global requests", or "request too large"
    # (the call alone needs more tokens than the client's whole tokens-per-minute budget).
    reason: str | None
    token_limit: int | None = None  # the client's tokens per minute; None = unlimited
    token_remaining: int = 0  # whole tokens left after this decision
    token_reset_s: float = 0.0  # seconds until the token bucket is full again
    reservation: TokenReservation | None = None  # tokens taken by an allowed call, to settle


def denial(
    now: float,
    requests: TokenBucket | None,
    tokens: TokenBucket | None,
    global_requests: TokenBucket | None,
    amount: int,
) -> RateDecision | None:
    """None when every bucket can give its share (the token bucket the call's whole
    reservation, ``amount``), else the denial; takes nothing, so a denial burns no budget."""
    reported = requests or global_requests
    if tokens is not None and amount > tokens.capacity:
        # More than the whole budget: no wait would let it through.
        return replace(
            allowing(now, reported, tokens),
            allowed=False,
            retry_after_s=math.inf,
            reason="request too large",
        )
    waits = [
        (bucket.seconds_until(now, need), reason, bucket)
        for bucket, need, reason in (
            (requests, 1, "client requests"),
            (tokens, amount, "client tokens"),
            (global_requests, 1, "global requests"),
        )
        if bucket is not None
    ]
    denials = [wait for wait in waits if wait[0] > 0]
    if not denials:
        return None
    # The longest wait, so that a client retrying after retry-after is not denied again
    # by another bucket.
    retry_after, reason, denier = max(denials, key=lambda wait: wait[0])
    # The request headers describe a request bucket: a token denial reports the client's.
    if denier is not tokens:
        reported = denier
    return replace(
        allowing(now, reported, tokens), allowed=False, retry_after_s=retry_after, reason=reason
    )


def allowing(
    now: float,
    requests: TokenBucket | None,
    tokens: TokenBucket | None,
    reservation: TokenReservation | None = None,
) -> RateDecision:
    """An allowing decision describing, as they stand at ``now``, the request bucket the headers
    report on and the client's token budget (None: no such limit)."""
    limit, remaining, reset_s = _state(requests, now)
    token_limit, token_remaining, token_reset_s = _state(tokens, now)
    return RateDecision(
        allowed=True,
        limit=limit,
        remaining=remaining,
        reset_s=reset_s,
        retry_after_s=0.0,
        reason=None,
        token_limit=token_limit,
        token_remaining=token_remaining,
        token_reset_s=token_reset_s,
        reservation=reservation,
    )


def _state(bucket: TokenBucket | None, now: float) -> tuple[int | None, int, float]:
    """``bucket``'s limit, whole tokens left and seconds until full ((None, 0, 0.0): no limit)."""
    if bucket is None:
        return None, 0, 0.0
    remaining = max(0, math.floor(bucket.available(now) + 1e-9))
    return round(bucket.capacity), remaining, bucket.seconds_until_full(now)


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*`` (Go style): "250ms", "1s", "6m0s"."""
    # Rounded up to the millisecond: a client waiting the printed time must find the budget back.
    # The small subtraction keeps float noise (59.9 * 1000 = 59900.000000000007) from adding 1 ms.
    millis = math.ceil(seconds * 1000 - 1e-6) if seconds > 0 else 0
    if millis < 1000:
        return f"{millis}ms" if millis else "0s"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    secs = f"{whole}.{fraction:03d}".rstrip("0") if fraction else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def retry_after_header(seconds: float) -> str:
    """The ``retry-after`` value: whole seconds, rounded up, at least 1."""
    # At least 1: "retry-after: 0" makes SDKs retry in a tight loop against a budget still empty.
    return str(max(1, math.ceil(seconds - _EPSILON)))
