"""BudgetKeeper: spend per client, for the gateway and per provider, against their USD budgets.

Spend is counted per UTC day and calendar month, seeded at start from the database (the hourly
rollup's cost and the log's unpriced calls) and kept in memory after. A call reserves an estimate
of its cost at admission (:meth:`BudgetKeeper.admit`, then :meth:`admit_provider` for each route
it tries) and settles with its real cost when it ends (:meth:`settle`): a budget refuses once
spent plus reserved reaches its limit, so concurrent calls overshoot it by at most one call.

Decisions are synchronous calls on the trio thread, as the rate limiter's are: nothing can run
between the check and the reservation. The actor's task reloads the budgets (a few rows) every
``poll_s`` — changes from the CLI or another process arrive that way — and writes the audit row
of each warning. Every crossing of a warning threshold or a limit is announced once per budget
and period: a log line, a live-feed event, an audit row, and :meth:`alerts` lists it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial

import trio

from actors.budget_tally import Hold, Tallies, Tally
from actors.fleet_budgets import FleetBudgetLedger, FleetKey, fleet_key
from proxy.budgets import (
    Budget,
    BudgetKey,
    BudgetState,
    Period,
    Scope,
    describe,
    iso_utc,
    period_bounds,
    state_of,
)
from proxy.errors import BudgetExceeded, ServiceUnavailable
from storage.audit import record_audit
from storage.budgets import (
    ClientBudget,
    ScopeBudget,
    SpendRow,
    client_budgets,
    scope_budgets,
    spend_since,
)
from storage.reads import ReadPool
from storage.sql import Connection
from storage.writer import StorageWriter

__all__ = ["BudgetKeeper", "BudgetKeeperStatistics", "wall_ms"]

log = logging.getLogger("llm_proxy.budgets")

_AUDIT_QUEUE = 256
_SLACK_USD = 1e-9
_AUDIT_WAIT_S = 10.0


def wall_ms() -> int:
    """Wall time in Unix ms: the one clock budgets read (a test replaces it to cross a day)."""
    return int(time.time() * 1000)


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetKeeperStatistics:
    """Budgets in force, tallies held, refusals per scope, warnings announced."""

    budgets: int
    tallies: int
    refusals: Mapping[str, int]
    announced: int
    audit_dropped: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Loaded:
    clients: list[ClientBudget]
    scopes: list[ScopeBudget]


def _load(conn: Connection) -> _Loaded:
    return _Loaded(client_budgets(conn), scope_budgets(conn))


def _limits(loaded: _Loaded) -> dict[BudgetKey, Budget]:
    """Every budget in force, by key."""
    limits: dict[BudgetKey, Budget] = {}

    def add(
        scope: Scope, id_: str, name: str, period: Period, limit: float | None, warn: int
    ) -> None:
        if limit is not None:
            key = BudgetKey(scope, id_, period)
            limits[key] = Budget(key, name, limit, warn)

    for client in loaded.clients:
        add("client", client.client_id, client.name, "day", client.day_usd, client.warn_percent)
        add("client", client.client_id, client.name, "month", client.month_usd, client.warn_percent)
    for scope in loaded.scopes:
        if scope.scope == "global":
            add("global", "", "global", "day", scope.day_usd, scope.warn_percent)
            add("global", "", "global", "month", scope.month_usd, scope.warn_percent)
        else:
            add("provider", scope.name, scope.name, "month", scope.month_usd, scope.warn_percent)
    return limits


def _call_keys(client_id: str) -> tuple[BudgetKey, ...]:
    return (
        BudgetKey("client", client_id, "day"),
        BudgetKey("client", client_id, "month"),
        BudgetKey("global", "", "day"),
        BudgetKey("global", "", "month"),
    )


def _provider_keys(provider: str) -> tuple[BudgetKey, ...]:
    return (BudgetKey("provider", provider, "day"), BudgetKey("provider", provider, "month"))


class BudgetKeeper:
    """Spend and reservations per budget scope; refuses calls past a budget; announces warnings."""

    def __init__(
        self,
        reads: ReadPool,
        writer: StorageWriter,
        publish: Callable[[Mapping[str, object]], None],
        *,
        clock_ms: Callable[[], int] | None = None,
        poll_s: float = 1.0,
        fleet: FleetBudgetLedger | None = None,
    ) -> None:
        self._reads = reads
        self._writer = writer
        self._publish = publish
        self._clock = clock_ms
        self._poll_s = poll_s
        self._fleet = fleet
        self._limits: dict[BudgetKey, Budget] = {}
        self._scopes: list[ScopeBudget] = []
        self._tallies = Tallies()
        self._refusals = {"client": 0, "global": 0, "provider": 0}
        self._announced = 0
        self._audit_dropped = 0
        self._audit_send, self._audit_receive = trio.open_memory_channel[dict[str, object]](
            _AUDIT_QUEUE
        )
        self._closed = trio.Event()
        self._seeded = False  # the tallies hold the database's spend as of the start

    # -- the actor -------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the budgets and seed the spend, report started, then reload and audit until
        closed."""
        await self.refresh()
        await self._seed()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_audits)
            while not self._closed.is_set():
                with trio.move_on_after(self._poll_s):
                    await self._closed.wait()
                if self._closed.is_set():
                    break
                try:
                    await self.refresh()
                except Exception:
                    log.warning(
                        "reloading the budgets failed; keeping the last ones", exc_info=True
                    )
            self._audit_send.close()

    def close(self) -> None:
        """Stop the actor (idempotent, from any task)."""
        self._closed.set()

    def statistics(self) -> BudgetKeeperStatistics:
        """Counters for ``/metrics`` and health."""
        return BudgetKeeperStatistics(
            budgets=len(self._limits),
            tallies=len(self._tallies),
            refusals=dict(self._refusals),
            announced=self._announced,
            audit_dropped=self._audit_dropped,
        )

    async def refresh(self) -> None:
        """Read the budgets from the database now (after a change made here or elsewhere)."""
        loaded = await self._reads.run(_load)
        limits = _limits(loaded)
        added = [key for key in limits if key not in self._limits]
        self._limits = limits
        self._scopes = loaded.scopes
        if added and self._seeded:
            await self._catch_up(added)

    async def _catch_up(self, keys: list[BudgetKey]) -> None:
        """Bring the tallies of budgets just set up to what the database holds: this process
        counted only its own calls since it started, and a fleet's Redis is seeded from this
        count, so the other processes' and hosts' spend would otherwise be missed."""
        now = self.now_ms()
        spend = await self._spend_in_database(now, {key.period for key in keys})
        for key in keys:
            cost, unpriced = spend.get(key, (0.0, 0))
            # Never lower: calls of this process may not have reached the database yet.
            self._tallies.get(key, now).follow(cost, unpriced)

    @property
    def enforcing(self) -> bool:
        """Whether any budget is set (else no call can be refused, and none needs an estimate)."""
        return bool(self._limits)

    def now_ms(self) -> int:
        """The budgets' clock."""
        return self._clock() if self._clock is not None else wall_ms()

    async def _spend_in_database(
        self, now: int, periods: set[Period]
    ) -> dict[BudgetKey, tuple[float, int]]:
        """Every scope's spend and unpriced calls in the current ``periods``, as logged."""
        sums: dict[BudgetKey, tuple[float, int]] = {}
        for period in sorted(periods):
            start, _ = period_bounds(period, now)
            rows: list[SpendRow] = await self._reads.run(partial(spend_since, since_ms=start))
            for row in rows:
                for key in (
                    BudgetKey("client", row.client_id, period),
                    BudgetKey("global", "", period),
                    BudgetKey("provider", row.provider, period),
                ):
                    cost, unpriced = sums.get(key, (0.0, 0))
                    sums[key] = (cost + row.cost_usd, unpriced + row.unpriced_calls)
        return sums

    async def _seed(self) -> None:
        now = self.now_ms()
        spend = await self._spend_in_database(now, {"day", "month"})
        for key, (cost, unpriced) in spend.items():
            self._tallies.seed(key, now, cost, unpriced)
        self._seeded = True
        # What stood before the start was announced by whoever saw it cross: not again.
        for key, budget in self._limits.items():
            tally = self._tallies.get(key, now)
            tally.announce(state_of(budget, tally.spent_usd))

    # -- admission and settlement ----------------------------------------------------------------

    async def admit(self, client_id: str, estimate_usd: float) -> Hold:
        """Reserve ``estimate_usd`` on the client's and the gateway's budgets; BudgetExceeded
        (429) when one of them is spent or reserved to its limit (fleet-wide with Redis)."""
        return await self._admit(_call_keys(client_id), Hold(max(0.0, estimate_usd)))

    async def admit_provider(self, hold: Hold, provider: str) -> None:
        """Reserve ``hold``'s estimate on ``provider``'s budget too; BudgetExceeded (a 429, worth
        a fallback) when it is spent or reserved to its limit."""
        await self._admit(_provider_keys(provider), hold)

    async def _admit(self, keys: tuple[BudgetKey, ...], hold: Hold) -> Hold:
        fleet = self._fleet
        limited = tuple(key for key in keys if key in self._limits)
        if fleet is not None and limited:
            sent = self._fleet_keys(limited, self.now_ms())
            answer = await fleet.admit(sent, hold.amount_usd)
            if answer is not None:
                now = self.now_ms()
                for key, (spent, _reserved) in zip(limited, answer.figures, strict=True):
                    # The fleet's count is the truth; this process's follows it.
                    self._tallies.get(key, now).follow(spent)
                if answer.refused:
                    key = limited[answer.refused - 1]
                    spent, reserved = answer.figures[answer.refused - 1]
                    self._refusals[key.scope] += 1
                    end_ms = self._tallies.get(key, now).end_ms
                    raise _refusal(self._limits[key], spent, reserved, end_ms, now)
                hold.reserved_in_fleet([(key.name, key.end_ms) for key in sent])
                for key in keys:
                    self._tallies.reserve(hold, key, now)
                return hold
            if fleet.refuses:
                raise ServiceUnavailable(
                    "The fleet's shared store (Redis) is unreachable and [cluster] on_redis_down"
                    " is 'refuse': spend budgets cannot be checked.",
                    code="budget_store_unavailable",
                    headers={"retry-after": "1"},
                )
        now = self.now_ms()
        self._check(keys, now)
        for key in keys:
            self._tallies.reserve(hold, key, now)
        # A checkpoint that never raises: nothing between the check and the reservation, and a
        # reservation made is always handed back to the caller to settle.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return hold

    def _fleet_keys(self, keys: Iterable[BudgetKey], now: int) -> list[FleetKey]:
        found = []
        for key in keys:
            tally = self._tallies.get(key, now)
            budget = self._limits.get(key)
            found.append(
                FleetKey(
                    fleet_key(key, tally.start_ms),
                    tally.end_ms,
                    tally.spent_usd,
                    tally.unpriced_calls,
                    budget.limit_usd if budget is not None else None,
                )
            )
        return found

    def settle(
        self,
        hold: Hold,
        *,
        client_id: str,
        provider: str | None,
        cost_usd: float | None,
        unpriced: bool,
    ) -> None:
        """Release ``hold`` and count what the call cost (``unpriced``: it had usage but no
        price) in every scope it touched; announce the budgets it pushed past a threshold."""
        now = self.now_ms()
        keys = _call_keys(client_id) + (_provider_keys(provider) if provider else ())
        if hold.fleet_places and self._fleet is not None:
            self._settle_fleet(hold, keys, now, cost_usd, unpriced)
        self._tallies.release(hold, now)
        if cost_usd is None and not unpriced:
            return
        for key in keys:
            tally = self._tallies.get(key, now)
            tally.count(cost_usd, unpriced=unpriced)
            budget = self._limits.get(key)
            if budget is not None:
                self._announce_if_crossed(budget, tally)

    def _settle_fleet(
        self,
        hold: Hold,
        keys: tuple[BudgetKey, ...],
        now: int,
        cost_usd: float | None,
        unpriced: bool,
    ) -> None:
        """Hand the fleet its settle: the estimate back where it was reserved, the cost added
        to this period's keys (only those of budgets: spend without a limit stays local)."""
        assert self._fleet is not None
        back = [FleetKey(name, end, 0.0, 0) for name, end in hold.fleet_places]
        hold.fleet_places.clear()
        limited = [key for key in keys if key in self._limits]
        add = self._fleet_keys(limited, now)
        self._fleet.settle_nowait(back, hold.amount_usd, add, cost_usd or 0.0, int(unpriced))

    def _check(self, keys: Iterable[BudgetKey], now: int) -> None:
        for key in keys:
            budget = self._limits.get(key)
            if budget is None:
                continue
            tally = self._tallies.get(key, now)
            # A nano-dollar of slack: ten reservations of 0.1 sum to 0.9999999999999999.
            if tally.spent_usd + tally.reserved_usd >= budget.limit_usd - _SLACK_USD:
                self._refusals[key.scope] += 1
                raise _refusal(budget, tally.spent_usd, tally.reserved_usd, tally.end_ms, now)

    # -- warnings --------------------------------------------------------------------------------

    def _announce_if_crossed(self, budget: Budget, tally: Tally) -> None:
        state = state_of(budget, tally.spent_usd)
        if state.rank <= tally.announced.rank:
            return
        tally.announce(state)
        alert = {**_alert(budget, tally, state), "label": describe(budget)}
        try:
            # Announced by the actor's task: with Redis, only the fleet's first process to see
            # the crossing announces it.
            self._audit_send.send_nowait(alert)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._audit_dropped += 1

    async def _write_audits(self) -> None:
        async for alert in self._audit_receive:
            try:
                await self._announce(alert)
            except Exception:
                log.warning("a budget warning was not announced in full", exc_info=True)

    async def _announce(self, alert: dict[str, object]) -> None:
        """One log line, one live-feed event and one audit row for a crossing."""
        scope, id_, state = alert["scope"], alert["id"], alert["state"]
        resets = int(alert["resets_at_ms"])  # type: ignore[call-overload]
        if self._fleet is not None:
            name = f"{scope}:{id_}:{alert['period']}:{resets}:{state}"
            if not await self._fleet.claim(name, resets):
                return
        self._announced += 1
        log.warning(
            "budget %s: %s of %s USD spent (%.0f%%, %s); resets %s",
            alert["label"],
            f"{alert['spent_usd']:.6g}",
            f"{alert['limit_usd']:.6g}",
            alert["percent"],
            state,
            iso_utc(resets),
        )
        shown = {k: v for k, v in alert.items() if k not in ("percent", "label")}
        self._publish({"type": "budget", **shown})
        target = f"{scope}:{id_}" if id_ else str(scope)
        with trio.move_on_after(_AUDIT_WAIT_S):
            await self._writer.execute(
                partial(
                    record_audit,
                    username="gateway",
                    action=f"budget.{state}",
                    target=target,
                    detail=shown,
                    now_ms=self.now_ms(),
                )
            )

    # -- what the dashboard shows ----------------------------------------------------------------

    def spend(self, scope: Scope, id_: str) -> dict[str, object]:
        """The spend of one scope this day and month, with when each resets and its state."""
        now = self.now_ms()
        day = self._tallies.get(BudgetKey(scope, id_, "day"), now)
        month = self._tallies.get(BudgetKey(scope, id_, "month"), now)
        worst = BudgetState.OK
        for tally, period in ((day, "day"), (month, "month")):
            budget = self._limits.get(BudgetKey(scope, id_, period))  # type: ignore[arg-type]
            if budget is not None:
                state = state_of(budget, tally.spent_usd)
                worst = state if state.rank > worst.rank else worst
        return {
            "day_usd": day.spent_usd,
            "month_usd": month.spent_usd,
            "day_unpriced_calls": day.unpriced_calls,
            "month_unpriced_calls": month.unpriced_calls,
            "day_resets_at_ms": day.end_ms,
            "month_resets_at_ms": month.end_ms,
            "state": worst.value,
        }

    def scope_budgets(self) -> list[ScopeBudget]:
        """The global and provider budgets as last loaded."""
        return list(self._scopes)

    def fleet_budgets(self) -> list[tuple[Budget, float]]:
        """The global and provider budgets (not the clients': too many for metrics) with what
        each spent this period."""
        now = self.now_ms()
        return [
            (budget, self._tallies.get(key, now).spent_usd)
            for key, budget in sorted(self._limits.items(), key=lambda item: repr(item[0]))
            if key.scope != "client"
        ]

    def alerts(self) -> list[dict[str, object]]:
        """Every budget at or past its warning threshold now, the worst first."""
        now = self.now_ms()
        found = []
        for key, budget in self._limits.items():
            tally = self._tallies.get(key, now)
            state = state_of(budget, tally.spent_usd)
            if state is not BudgetState.OK:
                found.append(_alert(budget, tally, state))
        found.sort(key=lambda alert: -float(alert["percent"]))  # type: ignore[arg-type]
        return found


def _alert(budget: Budget, tally: Tally, state: BudgetState) -> dict[str, object]:
    key = budget.key
    return {
        "scope": key.scope,
        "id": key.id,
        "name": budget.name,
        "period": key.period,
        "limit_usd": budget.limit_usd,
        "spent_usd": tally.spent_usd,
        "percent": round(100 * tally.spent_usd / budget.limit_usd, 1),
        "state": state.value,
        "resets_at_ms": tally.end_ms,
    }


def _refusal(
    budget: Budget, spent_usd: float, reserved_usd: float, end_ms: int, now: int
) -> BudgetExceeded:
    """The 429 of a call past ``budget``: what is spent and reserved, and when it resets."""
    wait_s = max(1, -(-(end_ms - now) // 1000))
    reserved = (
        f" (with {reserved_usd:.6g} USD reserved by calls under way)" if reserved_usd > 0 else ""
    )
    return BudgetExceeded(
        f"The {describe(budget)} budget of {budget.limit_usd:.6g} USD is used up:"
        f" {spent_usd:.6g} USD spent{reserved}. It resets at {iso_utc(end_ms)}.",
        headers={"retry-after": str(wait_s)},
    )
