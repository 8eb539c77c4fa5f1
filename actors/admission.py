"""Admission: the rate limiter as ``web/`` sees it, its buckets in memory or in Redis."""

from __future__ import annotations

from typing import Protocol

from actors.rate_limiter import ClientLimits, RateLimiterStatistics
from proxy.rate_limit import RateDecision, TokenReservation


class Admission(Protocol):
    """Decides calls against the rate limits: reserve at admission, settle after the call."""

    async def reserve(self, client: str, limits: ClientLimits, tokens: int = 0) -> RateDecision:
        """Decide one call; when allowed, take a request and reserve ``tokens`` (a denial is a
        429, never a wait for budget)."""

    def settle(self, reservation: TokenReservation, used: int | None) -> None:
        """Settle an allowed call's reservation with the tokens it used (None: unknown, the
        reservation stands); never waits."""

    async def peek(self, client: str, limits: ClientLimits) -> RateDecision:
        """The decision a request would get now, taking nothing."""

    def statistics(self) -> RateLimiterStatistics:
        """Decisions so far, for ``/metrics`` and the health page."""
