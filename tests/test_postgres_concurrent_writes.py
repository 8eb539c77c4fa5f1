"""Two gateways writing the same row of one PostgreSQL at once lose neither write.

On SQLite a write transaction (BEGIN IMMEDIATE) holds the database's one write lock from its
first statement, so a read-then-write inside it cannot interleave with another writer's. On
PostgreSQL each gateway's writer runs its own transaction under READ COMMITTED: a value read and
written back in Python must be locked when read, or the other gateway's change in between is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

import psycopg
import pytest

from storage.provider_settings import debit_credit, get_provider_settings, put_provider_settings
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from storage.users import (
    UserExists,
    count_admins,
    create_user,
    delete_user,
    list_users,
    update_user,
)
from tests.factories import T0
from tests.storage_backends import connect


def _wait_until_blocked(url: str, second: threading.Thread, deadline_s: float = 10.0) -> None:
    """Return once some session of the database waits for a row lock (or ``second`` is done:
    nothing made it wait)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as watcher:
        until = time.monotonic() + deadline_s
        while time.monotonic() < until and second.is_alive():
            waiting = watcher.execute(
                b"SELECT count(*) FROM pg_stat_activity"
                b" WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting is not None and waiting[0] > 0:
                return
            time.sleep(0.01)
    if second.is_alive():
        raise AssertionError("the second writer neither waited nor finished")


def _concurrently(
    url: str, first: Callable[[Connection], object], second: Callable[[Connection], object]
) -> None:
    """``first`` runs in an open transaction; ``second`` starts on another connection and runs
    into it; then ``first`` commits and ``second`` finishes. What ``second`` raised."""
    a, b = connect(url), connect(url)
    try:
        a.execute("BEGIN")
        first(a)
        errors: list[BaseException] = []

        def run_second() -> None:
            try:
                in_immediate_transaction(b, second)
            except BaseException as exc:  # reported below, on the test's thread
                errors.append(exc)

        thread = threading.Thread(target=run_second)
        thread.start()
        _wait_until_blocked(url, thread)
        a.execute("COMMIT")
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        a.close()
        b.close()
    return errors


def test_two_gateways_debiting_one_provider_lose_no_debit(postgres_url: str) -> None:
    conn = connect(postgres_url)
    try:
        in_immediate_transaction(
            conn,
            partial(
                put_provider_settings,
                provider="openai",
                credit_balance_usd=10.0,
                low_credit_threshold_usd=7.5,
                now_ms=T0,
            ),
        )
    finally:
        conn.close()
    crossings: list[object] = []

    def debit(cost: float, c: Connection) -> None:
        crossings.extend(debit_credit(c, {"openai": cost}, now_ms=T0))

    assert _concurrently(postgres_url, partial(debit, 1.0), partial(debit, 2.0)) == []
    conn = connect(postgres_url)
    try:
        row = get_provider_settings(conn, "openai")
    finally:
        conn.close()
    assert row is not None
    assert row.credit_balance_usd == 7.0
    assert crossings == [("openai", 7.0, 7.5)]  # the second debit crossed the line, once


HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"


@pytest.mark.parametrize("change", ["delete", "demote"])
def test_two_gateways_cannot_remove_the_last_two_admins_at_once(
    postgres_url: str, change: str
) -> None:
    conn = connect(postgres_url)
    try:
        for name in ("ann", "bob"):
            in_immediate_transaction(
                conn,
                partial(create_user, username=name, password_hash=HASH, role="admin", now_ms=T0),
            )
    finally:
        conn.close()

    def remove(name: str, c: Connection) -> None:
        if change == "delete":
            delete_user(c, name)
        else:
            update_user(c, name, role="viewer", now_ms=T0)

    errors = _concurrently(postgres_url, partial(remove, "ann"), partial(remove, "bob"))
    assert len(errors) == 1
    assert isinstance(errors[0], ValueError)
    assert "last admin" in str(errors[0])
    conn = connect(postgres_url)
    try:
        assert count_admins(conn) == 1
    finally:
        conn.close()


def test_two_gateways_creating_names_that_fold_alike_make_one_user(postgres_url: str) -> None:
    def create(name: str, c: Connection) -> None:
        create_user(c, username=name, password_hash=HASH, role="viewer", now_ms=T0)

    errors = _concurrently(postgres_url, partial(create, "Alice"), partial(create, "alice"))
    assert len(errors) == 1
    assert isinstance(errors[0], UserExists)  # the API's 409, not a constraint error's 500
    assert "'Alice'" in str(errors[0])
    conn = connect(postgres_url)
    try:
        assert [user.username for user in list_users(conn)] == ["Alice"]
    finally:
        conn.close()
