"""The BudgetKeeper on a real database: reservations, refusals, periods on a controllable clock,
unpriced calls, warnings announced once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import trio

from actors.budget_keeper import BudgetKeeper
from actors.budget_tally import Hold
from proxy.errors import BudgetExceeded
from storage import create_client
from storage.audit import list_audit
from storage.batch import write_batch
from storage.budgets import set_client_budget, set_global_budget, set_provider_budget
from storage.reads import ReadPool
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.factories import make_record
from tests.storage_backends import connect, writer_on


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class Clock:
    """A wall clock a test sets."""

    def __init__(self, at: str) -> None:
        self.now = ms(at)

    def __call__(self) -> int:
        return self.now

    def set(self, at: str) -> None:
        self.now = ms(at)


def _setup(path: str, fn: Callable[[Connection], object] | None = None, **budget: object) -> str:
    conn = connect(path)
    try:
        client, _t, _p = in_immediate_transaction(
            conn, partial(create_client, name="acme", now_ms=0)
        )
        if budget:
            in_immediate_transaction(
                conn,
                partial(set_client_budget, client_id=client.id, now_ms=0, **budget),  # type: ignore[arg-type]
            )
        if fn is not None:
            in_immediate_transaction(conn, fn)
        return client.id
    finally:
        conn.close()


@asynccontextmanager
async def running_keeper(
    path: str, clock: Clock, events: list[Mapping[str, object]]
) -> AsyncIterator[BudgetKeeper]:
    reads = ReadPool(path)
    async with writer_on(path) as writer, trio.open_nursery() as nursery:
        keeper = BudgetKeeper(reads, writer, events.append, clock_ms=clock, poll_s=3600)
        await nursery.start(keeper.run)
        try:
            yield keeper
        finally:
            keeper.close()
    reads.close()


async def test_calls_are_refused_once_spent_plus_reserved_reaches_the_budget(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(path, day_usd=1.0)
    clock = Clock("2026-03-10T12:00:00")
    async with running_keeper(path, clock, []) as keeper:
        # 40 calls at once, each reserving 0.1: ten fit, the other thirty are refused
        holds = []
        refused = 0
        for _ in range(40):
            try:
                holds.append(await keeper.admit(client, 0.1))
            except BudgetExceeded:
                refused += 1
        assert (len(holds), refused) == (10, 30)
        for hold in holds:
            keeper.settle(hold, client_id=client, provider="openai", cost_usd=0.05, unpriced=False)
        # Settled below the estimate: room again for ten calls' worth of reservations
        assert keeper.spend("client", client)["day_usd"] == pytest.approx(0.5)
        for _ in range(5):
            keeper.settle(
                await keeper.admit(client, 0.1),
                client_id=client,
                provider="openai",
                cost_usd=0.1,
                unpriced=False,
            )
        with pytest.raises(BudgetExceeded) as refusal:
            await keeper.admit(client, 0.1)
    error = refusal.value
    assert (error.status, error.error_type, error.code) == (
        429,
        "insufficient_quota",
        "budget_exceeded",
    )
    assert "client 'acme' daily budget of 1 USD" in error.message
    assert "It resets at 2026-03-11T00:00:00Z" in error.message
    assert error.headers["retry-after"] == str(12 * 3600)


async def test_a_day_boundary_resets_the_day_and_the_month_keeps_counting(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(path, day_usd=1.0, month_usd=1.5)
    clock = Clock("2026-01-31T23:59:00")
    async with running_keeper(path, clock, []) as keeper:
        late = await keeper.admit(client, 0.05)  # admitted in January, settled in February
        hold = await keeper.admit(client, 0.9)
        keeper.settle(hold, client_id=client, provider="openai", cost_usd=1.0, unpriced=False)
        with pytest.raises(BudgetExceeded, match="daily"):
            await keeper.admit(client, 0.2)
        clock.set("2026-01-31T23:59:59")
        with pytest.raises(BudgetExceeded, match="daily"):
            await keeper.admit(client, 0.2)
        clock.set("2026-02-01T00:00:01")
        # a new month: both periods start again
        keeper.settle(late, client_id=client, provider="openai", cost_usd=0.05, unpriced=False)
        assert keeper.spend("client", client)["day_usd"] == pytest.approx(0.05)
        assert keeper.spend("client", client)["month_usd"] == pytest.approx(0.05)
        hold = await keeper.admit(client, 0.9)
        keeper.settle(hold, client_id=client, provider="openai", cost_usd=0.9, unpriced=False)
        clock.set("2026-02-02T08:00:00")
        # spent yesterday does not count today; the month does
        spend = keeper.spend("client", client)
        assert spend["day_usd"] == 0
        assert spend["month_usd"] == pytest.approx(0.95)
        assert spend["day_resets_at_ms"] == ms("2026-02-03T00:00:00")
        assert spend["month_resets_at_ms"] == ms("2026-03-01T00:00:00")
        hold = await keeper.admit(client, 0.5)
        keeper.settle(hold, client_id=client, provider="openai", cost_usd=0.6, unpriced=False)
        with pytest.raises(BudgetExceeded, match=r"monthly budget of 1\.5 USD") as refusal:
            await keeper.admit(client, 0.01)
    assert "It resets at 2026-03-01T00:00:00Z" in refusal.value.message


async def test_the_spend_is_seeded_from_the_database(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(path, month_usd=10.0)
    now = ms("2026-03-10T12:00:00")
    records = [
        make_record(1, client_id=client, ts_ms=now - 3_600_000, cost_usd=2.0),
        make_record(2, client_id=client, ts_ms=ms("2026-03-01T00:30:00"), cost_usd=3.0),
        make_record(3, client_id=client, ts_ms=ms("2026-02-28T23:00:00"), cost_usd=50.0),
        make_record(4, client_id=client, ts_ms=now - 60_000, cost_usd=None, provider="ollama"),
    ]
    conn: Connection = connect(path)
    try:
        write_batch(conn, records)
    finally:
        conn.close()
    async with running_keeper(path, Clock("2026-03-10T12:00:00"), []) as keeper:
        spend = keeper.spend("client", client)
        assert spend["day_usd"] == pytest.approx(2.0)
        assert spend["month_usd"] == pytest.approx(5.0)
        assert (spend["day_unpriced_calls"], spend["month_unpriced_calls"]) == (1, 1)
        assert keeper.spend("provider", "ollama")["month_unpriced_calls"] == 1
        assert keeper.spend("global", "")["month_usd"] == pytest.approx(5.0)


async def test_an_unpriced_call_is_counted_in_every_scope_it_touched(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(path)
    async with running_keeper(path, Clock("2026-03-10T12:00:00"), []) as keeper:
        hold = await keeper.admit(client, 0.0)
        await keeper.admit_provider(hold, "ollama")
        keeper.settle(hold, client_id=client, provider="ollama", cost_usd=None, unpriced=True)
        for scope, id_ in (("client", client), ("global", ""), ("provider", "ollama")):
            spend = keeper.spend(scope, id_)  # type: ignore[arg-type]
            assert (spend["day_unpriced_calls"], spend["month_unpriced_calls"]) == (1, 1)
            assert spend["month_usd"] == 0


async def test_a_provider_over_its_budget_refuses_its_routes_only(tmp_path: Path) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(
        path,
        partial(set_provider_budget, provider="openai", month_usd=1.0, warn_percent=80, now_ms=0),
    )
    async with running_keeper(path, Clock("2026-03-10T12:00:00"), []) as keeper:
        hold = await keeper.admit(client, 0.5)
        await keeper.admit_provider(hold, "openai")
        keeper.settle(hold, client_id=client, provider="openai", cost_usd=1.0, unpriced=False)
        hold = await keeper.admit(client, 0.5)
        with pytest.raises(BudgetExceeded, match="provider 'openai' monthly") as refusal:
            await keeper.admit_provider(hold, "openai")
        await keeper.admit_provider(hold, "gemini")
        assert refusal.value.status == 429


async def test_warnings_are_announced_once_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "b.db")
    client = _setup(
        path,
        partial(set_global_budget, day_usd=None, month_usd=100.0, warn_percent=50, now_ms=0),
        day_usd=1.0,
        warn_percent=80,
    )
    events: list[Mapping[str, object]] = []
    caplog.set_level(logging.WARNING, logger="llm_proxy.budgets")
    async with running_keeper(path, Clock("2026-03-10T12:00:00"), events) as keeper:
        for cost in (0.5, 0.3, 0.05, 0.1, 0.2, 0.3):  # 80% at the second, 100% at the fifth
            keeper.settle(
                Hold(0.0), client_id=client, provider="openai", cost_usd=cost, unpriced=False
            )
        alerts = keeper.alerts()
        await trio.sleep(0.5)  # the audit rows are written by the actor's task
    assert [(e["scope"], e["period"], e["state"]) for e in events] == [
        ("client", "day", "warning"),
        ("client", "day", "exceeded"),
    ]
    assert events[0]["type"] == "budget"
    assert events[0]["name"] == "acme"
    assert events[1]["limit_usd"] == 1.0
    lines = [r.getMessage() for r in caplog.records if r.name == "llm_proxy.budgets"]
    assert len(lines) == 2
    assert "client 'acme' daily" in lines[0]
    assert [(a["scope"], a["state"]) for a in alerts] == [("client", "exceeded")]
    conn = connect(path)
    try:
        audits = [row for row in list_audit(conn) if row.action.startswith("budget.")]
    finally:
        conn.close()
    assert sorted(row.action for row in audits) == ["budget.exceeded", "budget.warning"]
    assert {row.target for row in audits} == {f"client:{client}"}
