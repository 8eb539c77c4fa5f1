"""A circuit breaker per provider (design §2): a pure state machine, the time passed in.

CLOSED counts consecutive failures and opens at ``failures``. OPEN refuses every call until
``cooldown_s`` has passed, then lets exactly one probe through (HALF_OPEN); the probe's success
closes the breaker, its failure re-opens it with a fresh cool-down, and a neutral outcome (the
client's own 4xx, a cancelled call) frees the slot for the next caller to probe.

Outcomes of calls admitted before the breaker opened may arrive late. While OPEN they are ignored
(the cool-down stands); while HALF_OPEN they count like the probe's, since a success or a failure
is evidence about the upstream whichever call saw it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class BreakerState(enum.Enum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """A snapshot for health and metrics."""

    state: str
    consecutive_failures: int
    opened_at: float | None  # when it last opened; None while closed
    trips: int  # how many times it opened (a failed probe included)


class CircuitBreaker:
    """Closed → open after N consecutive failures → one half-open probe after a cool-down."""

    def __init__(
        self,
        *,
        failures: int,
        cooldown_s: float,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be at least 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._trips = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an OPEN breaker past its cool-down turns HALF_OPEN in allow())."""
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go to the upstream now; True in HALF_OPEN for one probe at a time."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if now < self._reopen_at():
                return False
            self._change(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self, now: float) -> None:
        """The upstream answered properly: reset the count; a half-open breaker closes."""
        if self._state is BreakerState.OPEN:
            return
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._opened_at = None
            self._change(BreakerState.CLOSED)

    def record_failure(self, now: float) -> None:
        """The upstream failed: count it; open at the threshold, re-open from half-open."""
        if self._state is BreakerState.OPEN:
            return
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._open(now)

    def record_neutral(self) -> None:
        """A call that says nothing about the upstream's health: free the probe slot."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def retry_after_s(self, now: float) -> float:
        """Seconds until a probe may go (0 when calls pass or a probe is due or running)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(self._reopen_at() - now, 0.0)

    def statistics(self) -> BreakerStatistics:
        """State, consecutive failures, when it opened, trips so far."""
        return BreakerStatistics(self._state.value, self._failures, self._opened_at, self._trips)

    def _reopen_at(self) -> float:
        assert self._opened_at is not None
        return self._opened_at + self._cooldown_s

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probing = False
        self._trips += 1
        self._change(BreakerState.OPEN)

    def _change(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if self._on_change is not None and old is not new:
            self._on_change(old, new)
