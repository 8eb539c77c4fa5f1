"""Budgets as stored, on each backend: client columns, global and provider rows, spend read back."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from storage import create_client
from storage.batch import write_batch
from storage.budgets import (
    client_budgets,
    get_client_budget,
    scope_budgets,
    set_client_budget,
    set_global_budget,
    set_provider_budget,
    spend_since,
)
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.factories import T0, make_record
from tests.storage_backends import connect

NOW = 1_700_000_000_000


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    connection = connect(database_url)
    try:
        yield connection
    finally:
        connection.close()


def _new_client(conn: Connection, name: str) -> str:
    client, _token, _plain = in_immediate_transaction(
        conn, partial(create_client, name=name, now_ms=NOW)
    )
    return client.id


def test_a_client_has_no_budget_until_one_is_set(conn: Connection) -> None:
    client_id = _new_client(conn, "acme")
    budget = get_client_budget(conn, client_id)
    assert (budget.day_usd, budget.month_usd, budget.warn_percent) == (None, None, 80)
    assert client_budgets(conn) == []
    in_immediate_transaction(
        conn, partial(set_client_budget, client_id=client_id, day_usd=2.5, now_ms=NOW)
    )
    (listed,) = client_budgets(conn)
    assert (listed.name, listed.day_usd, listed.month_usd) == ("acme", 2.5, None)
    # 0 removes a budget; the others stay as they were
    in_immediate_transaction(
        conn,
        partial(set_client_budget, client_id=client_id, day_usd=0, month_usd=40, now_ms=NOW),
    )
    budget = get_client_budget(conn, client_id)
    assert (budget.day_usd, budget.month_usd, budget.warn_percent) == (None, 40.0, 80)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("day_usd", -1, "budget_day_usd must not be negative"),
        ("month_usd", float("nan"), "budget_month_usd must be a finite number"),
        ("month_usd", 2e9, "budget_month_usd must be at most"),
        ("day_usd", "5", "budget_day_usd must be a number"),
        ("warn_percent", 0, "budget_warn_percent must be a whole number from 1 to 100"),
        ("warn_percent", 101, "budget_warn_percent must be a whole number from 1 to 100"),
    ],
)
def test_a_bad_client_budget_is_refused_naming_the_field(
    conn: Connection, field: str, value: object, says: str
) -> None:
    client_id = _new_client(conn, "acme")
    with pytest.raises(ValueError, match=says):
        in_immediate_transaction(
            conn,
            partial(set_client_budget, client_id=client_id, now_ms=NOW, **{field: value}),  # type: ignore[arg-type]
        )
    assert get_client_budget(conn, client_id).day_usd is None


def test_global_and_provider_budgets_round_trip(conn: Connection) -> None:
    (initial,) = scope_budgets(conn)
    assert (initial.scope, initial.day_usd, initial.month_usd, initial.warn_percent) == (
        "global",
        None,
        None,
        80,
    )
    in_immediate_transaction(
        conn,
        partial(set_global_budget, day_usd=10, month_usd=200, warn_percent=90, now_ms=NOW),
    )
    in_immediate_transaction(
        conn,
        partial(set_provider_budget, provider="openai", month_usd=50, warn_percent=75, now_ms=NOW),
    )
    budgets = {(b.scope, b.name): b for b in scope_budgets(conn)}
    assert budgets["global", ""].day_usd == 10.0
    assert budgets["global", ""].warn_percent == 90
    assert budgets["provider", "openai"].month_usd == 50.0
    assert budgets["provider", "openai"].day_usd is None
    with pytest.raises(ValueError, match="warn_percent must be a whole number from 1 to 100"):
        set_provider_budget(conn, "openai", month_usd=5, warn_percent=0, now_ms=NOW)


def test_spend_since_reads_priced_cost_and_unpriced_calls(conn: Connection) -> None:
    hour = T0 - T0 % 3_600_000
    records = [
        make_record(1, client_id="a", provider="openai", cost_usd=0.25),
        make_record(2, client_id="a", provider="openai", cost_usd=0.5),
        make_record(3, client_id="a", provider="ollama", cost_usd=None),
        # no usage, no cost: a call that never got an answer is not "unpriced"
        make_record(
            4,
            client_id="b",
            provider="openai",
            cost_usd=None,
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            status="error",
        ),
    ]
    write_batch(conn, records)
    rows = {
        (r.client_id, r.provider): (r.cost_usd, r.unpriced_calls) for r in spend_since(conn, hour)
    }
    cost, unpriced = rows[("a", "openai")]
    assert (round(cost, 9), unpriced) == (0.75, 0)
    assert rows[("a", "ollama")] == (0.0, 1)
    assert rows.get(("b", "openai"), (0.0, 0)) == (0.0, 0)
    assert spend_since(conn, hour + 100 * 3_600_000) == []
