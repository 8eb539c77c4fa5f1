"""What each budget scope spent and holds reserved in its current period: in-memory arithmetic.

One :class:`Tally` per (scope, id, period): spent USD, reserved USD (estimates of calls under
way), unpriced calls. A tally belongs to one period (its start): read in a later one it starts
again from zero, so yesterday's spend never counts today and nothing has to sweep at midnight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.budgets import BudgetKey, BudgetState, period_bounds

__all__ = ["Hold", "Tallies", "Tally"]


@dataclass(slots=True)
class Tally:
    """One scope's spend in one period."""

    start_ms: int
    end_ms: int
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    unpriced_calls: int = 0
    announced: BudgetState = BudgetState.OK
    """The worst state already announced this period (each is announced once)."""

    def follow(self, spent_usd: float, unpriced_calls: int = 0) -> None:
        """Raise the spend to what a fuller count says (the database's, the fleet's): never
        lower, as this process's own calls may not be in that count yet."""
        self.spent_usd = max(self.spent_usd, spent_usd)
        self.unpriced_calls = max(self.unpriced_calls, unpriced_calls)

    def count(self, cost_usd: float | None, *, unpriced: bool) -> None:
        """Add one call's cost (None: nothing billed), or one unpriced call."""
        if cost_usd is not None:
            self.spent_usd += cost_usd
        if unpriced:
            self.unpriced_calls += 1

    def announce(self, state: BudgetState) -> None:
        """Record ``state`` as announced for this period."""
        self.announced = state


@dataclass(slots=True)
class Hold:
    """The estimate one call reserved, and in which tallies (each with its period's start)."""

    amount_usd: float
    places: list[tuple[BudgetKey, int]] = field(default_factory=list)
    fleet_places: list[tuple[str, int]] = field(default_factory=list)
    """The Redis keys (with their period's end) it is reserved in too, settled there."""

    def reserved_in_fleet(self, places: list[tuple[str, int]]) -> None:
        """Note the Redis keys (with their period's end) the fleet reserved it in."""
        self.fleet_places += places


class Tallies:
    """Every scope's tally, each for the period holding ``now_ms`` when read."""

    def __init__(self) -> None:
        self._tallies: dict[BudgetKey, Tally] = {}

    def get(self, key: BudgetKey, now_ms: int) -> Tally:
        """The tally of ``key`` for the period holding ``now_ms`` (a fresh one in a new period)."""
        tally = self._tallies.get(key)
        if tally is None or not tally.start_ms <= now_ms < tally.end_ms:
            start, end = period_bounds(key.period, now_ms)
            tally = self._tallies[key] = Tally(start, end)
        return tally

    def peek(self, key: BudgetKey, now_ms: int) -> Tally | None:
        """The tally of ``key`` if it has one in the period holding ``now_ms``."""
        tally = self._tallies.get(key)
        if tally is None or not tally.start_ms <= now_ms < tally.end_ms:
            return None
        return tally

    def reserve(self, hold: Hold, key: BudgetKey, now_ms: int) -> None:
        """Add ``hold``'s estimate to ``key``'s reservations."""
        tally = self.get(key, now_ms)
        tally.reserved_usd += hold.amount_usd
        hold.places.append((key, tally.start_ms))

    def release(self, hold: Hold, now_ms: int) -> None:
        """Take ``hold``'s estimate back from every tally it is in (a period that ended has
        nothing to take back from)."""
        for key, start in hold.places:
            tally = self.peek(key, now_ms)
            if tally is not None and tally.start_ms == start:
                tally.reserved_usd = max(0.0, tally.reserved_usd - hold.amount_usd)
        hold.places.clear()

    def seed(self, key: BudgetKey, now_ms: int, spent_usd: float, unpriced_calls: int) -> None:
        """Set ``key``'s spend as the database says it stands (at start, before any call)."""
        tally = self.get(key, now_ms)
        tally.spent_usd = spent_usd
        tally.unpriced_calls = unpriced_calls

    def __len__(self) -> int:
        return len(self._tallies)
