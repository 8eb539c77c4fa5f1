"""Clients and keys in SQLite: semantics, change counter, key use, usage, no plain key stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import apsw
import pytest

from proxy.keys import key_digest
from storage import (
    UNCHANGED,
    ClientUsage,
    active_keys,
    add_key,
    auth_generation,
    client_usage,
    create_client,
    delete_client,
    get_client,
    list_clients,
    list_keys,
    record_key_use,
    revoke_client,
    revoke_key,
    update_client,
)
from storage.responses import ResponseToStore, insert_response
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.factories import make_record
from tests.storage_backends import connect, is_postgres, writer_on
from tests.storage_backends import reader as open_reader

T = TypeVar("T")

HOUR_MS = 3_600_000
NOW = 1_700_000_000_000


@pytest.fixture
def db(database_url: str) -> str:
    """The database of one test: a SQLite file or a fresh PostgreSQL database."""
    return database_url


@pytest.fixture
def conn(db: str) -> Iterator[Connection]:
    connection = connect(db)
    try:
        yield connection
    finally:
        connection.close()


def write(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` the way the CLI and the writer do: in its own IMMEDIATE transaction."""
    return in_immediate_transaction(conn, fn)


def new_client(conn: Connection, name: str = "demo", now_ms: int = NOW, **kwargs: object) -> str:
    client, _token, _plain = write(
        conn,
        partial(create_client, name=name, now_ms=now_ms, **kwargs),  # type: ignore[arg-type]
    )
    return client.id


# --- create / get / list --------------------------------------------------------------------------


def test_create_client_returns_rows_and_the_key_once(conn: Connection) -> None:
    client, token, plain = write(
        conn,
        partial(
            create_client,
            name="  billing  ",
            description="the billing team",
            rate_limit_per_minute=30,
            tokens_per_minute=1000,
            key_name="laptop",
            now_ms=NOW,
        ),
    )
    assert re.fullmatch(r"cl_[0-9a-f]{16}", client.id)
    assert client.name == "billing"  # stripped
    assert client.description == "the billing team"
    assert client.is_active
    assert (client.rate_limit_per_minute, client.tokens_per_minute) == (30, 1000)
    assert (client.created_at, client.updated_at) == (NOW, NOW)
    assert client.key_count == 1
    assert client.last_used_at is None
    assert get_client(conn, client.id) == client
    assert token.client_id == client.id
    assert token.name == "laptop"
    assert (token.prefix, token.last4) == (plain[:7], plain[-4:])
    assert token.masked == f"{plain[:7]}…{plain[-4:]}"
    assert token.created_at == NOW
    assert token.last_used_at is None
    assert token.revoked_at is None
    assert list_keys(conn, client.id) == [token]
    [active] = active_keys(conn)
    assert active.token_id == token.id
    assert active.client_id == client.id
    assert active.token_sha256 == key_digest(plain)
    assert (active.rate_limit_per_minute, active.tokens_per_minute) == (30, 1000)
    assert plain not in repr((client, token, active))


def test_defaults_are_null_limits(conn: Connection) -> None:
    client = get_client(conn, new_client(conn))
    assert client.rate_limit_per_minute is None
    assert client.tokens_per_minute is None
    assert client.description == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "name must not be empty"),
        ({"name": "   "}, "name must not be empty"),
        ({"name": "two\nlines"}, "control characters"),
        ({"name": "x" * 201}, "at most 200"),
        ({"name": "ok", "rate_limit_per_minute": -1}, "rate_limit_per_minute must not be negative"),
        ({"name": "ok", "tokens_per_minute": -5}, "tokens_per_minute must not be negative"),
        ({"name": "ok", "rate_limit_per_minute": True}, "whole number"),
        ({"name": "ok", "tokens_per_minute": 1.5}, "whole number"),
        ({"name": "ok", "key_name": "a\x1b[31m"}, "control characters"),
    ],
)
def test_create_client_validates(conn: Connection, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write(conn, partial(create_client, now_ms=NOW, **kwargs))  # type: ignore[arg-type]
    assert list_clients(conn) == []
    assert auth_generation(conn) == 0


def test_zero_limits_are_allowed(conn: Connection) -> None:
    client = get_client(conn, new_client(conn, rate_limit_per_minute=0, tokens_per_minute=0))
    assert (client.rate_limit_per_minute, client.tokens_per_minute) == (0, 0)


def test_list_clients_oldest_first_with_key_summary(conn: Connection) -> None:
    later = new_client(conn, "later", now_ms=NOW + 10)
    first = new_client(conn, "first", now_ms=NOW)
    same_ms = new_client(conn, "same-ms", now_ms=NOW + 10)
    token, _ = write(conn, partial(add_key, client_id=first, now_ms=NOW + 20))
    write(conn, partial(record_key_use, last_used={token.id: NOW + 500}))
    assert [c.id for c in list_clients(conn)] == [first, later, same_ms]
    summary = list_clients(conn)[0]
    assert summary.key_count == 2
    assert summary.last_used_at == NOW + 500
    write(conn, partial(revoke_key, token_id=token.id, now_ms=NOW + 600))
    summary = get_client(conn, first)
    assert summary.key_count == 1
    # A revoked key's last use still counts as the client's last use.
    assert summary.last_used_at == NOW + 500


def test_unknown_ids_raise_lookup_error(conn: Connection) -> None:
    with pytest.raises(LookupError, match="unknown client: cl_nope"):
        get_client(conn, "cl_nope")
    with pytest.raises(LookupError, match="unknown client"):
        list_keys(conn, "cl_nope")
    with pytest.raises(LookupError, match="unknown client"):
        write(conn, partial(add_key, client_id="cl_nope", now_ms=NOW))
    with pytest.raises(LookupError, match="unknown key: 42"):
        write(conn, partial(revoke_key, token_id=42, now_ms=NOW))
    with pytest.raises(LookupError, match="unknown client"):
        write(conn, partial(revoke_client, client_id="cl_nope", now_ms=NOW))
    with pytest.raises(LookupError, match="unknown client"):
        write(conn, partial(update_client, client_id="cl_nope", now_ms=NOW, name="x"))
    with pytest.raises(LookupError, match="unknown client"):
        write(conn, partial(delete_client, client_id="cl_nope"))
    assert auth_generation(conn) == 0


# --- keys -----------------------------------------------------------------------------------------


def test_several_keys_per_client(conn: Connection) -> None:
    client_id = new_client(conn)
    second, plain2 = write(conn, partial(add_key, client_id=client_id, name="ci", now_ms=NOW + 1))
    third, plain3 = write(conn, partial(add_key, client_id=client_id, now_ms=NOW + 2))
    keys = list_keys(conn, client_id)
    assert [k.id for k in keys][1:] == [second.id, third.id]
    assert keys[1].name == "ci"
    assert plain2 != plain3
    assert {k.token_sha256 for k in active_keys(conn)} >= {key_digest(plain2), key_digest(plain3)}
    assert get_client(conn, client_id).key_count == 3


def test_revoke_key_is_idempotent(conn: Connection) -> None:
    client_id = new_client(conn)
    token, plain = write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    revoked = write(conn, partial(revoke_key, token_id=token.id, now_ms=NOW + 100))
    assert revoked.revoked_at == NOW + 100
    assert revoked.revoked
    again = write(conn, partial(revoke_key, token_id=token.id, now_ms=NOW + 999))
    assert again.revoked_at == NOW + 100
    assert key_digest(plain) not in {k.token_sha256 for k in active_keys(conn)}
    assert len(active_keys(conn)) == 1  # the client's first key still works
    assert get_client(conn, client_id).is_active


def test_revoke_client_deactivates_and_revokes_every_key(conn: Connection) -> None:
    client_id = new_client(conn)
    other = new_client(conn, "other")
    write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    early, _ = write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    write(conn, partial(revoke_key, token_id=early.id, now_ms=NOW + 1))
    assert write(conn, partial(revoke_client, client_id=client_id, now_ms=NOW + 50)) == 2
    client = get_client(conn, client_id)
    assert not client.is_active
    assert client.key_count == 0
    assert client.updated_at == NOW + 50
    revoked_at = {k.id: k.revoked_at for k in list_keys(conn, client_id)}
    assert revoked_at[early.id] == NOW + 1  # already revoked: kept
    assert set(revoked_at.values()) == {NOW + 1, NOW + 50}
    assert {k.client_id for k in active_keys(conn)} == {other}
    assert write(conn, partial(revoke_client, client_id=client_id, now_ms=NOW + 60)) == 0
    assert get_client(conn, client_id).updated_at == NOW + 50


def test_inactive_client_keys_come_back_when_reactivated(conn: Connection) -> None:
    client_id = new_client(conn)
    write(conn, partial(update_client, client_id=client_id, now_ms=NOW, is_active=False))
    assert active_keys(conn) == []
    write(conn, partial(update_client, client_id=client_id, now_ms=NOW, is_active=True))
    assert [k.client_id for k in active_keys(conn)] == [client_id]


# --- update / delete ------------------------------------------------------------------------------


def test_update_changes_only_the_fields_given(conn: Connection) -> None:
    client_id = new_client(conn, description="d", rate_limit_per_minute=10, tokens_per_minute=20)
    updated = write(conn, partial(update_client, client_id=client_id, now_ms=NOW + 5, name="new"))
    assert updated.name == "new"
    assert updated.description == "d"
    assert (updated.rate_limit_per_minute, updated.tokens_per_minute) == (10, 20)
    assert updated.is_active
    assert updated.updated_at == NOW + 5
    assert updated.created_at == NOW
    # None is a real value for the limits: back to the configured default.
    updated = write(
        conn,
        partial(update_client, client_id=client_id, now_ms=NOW + 6, rate_limit_per_minute=None),
    )
    assert (updated.rate_limit_per_minute, updated.tokens_per_minute) == (None, 20)
    updated = write(
        conn,
        partial(
            update_client,
            client_id=client_id,
            now_ms=NOW + 7,
            tokens_per_minute=0,
            rate_limit_per_minute=UNCHANGED,
            description="",
        ),
    )
    assert (updated.rate_limit_per_minute, updated.tokens_per_minute) == (None, 0)
    assert updated.description == ""
    # Nothing given: nothing changes, not even updated_at.
    same = write(conn, partial(update_client, client_id=client_id, now_ms=NOW + 8))
    assert same == updated


def test_update_validates(conn: Connection) -> None:
    client_id = new_client(conn)
    with pytest.raises(ValueError, match="name must not be empty"):
        write(conn, partial(update_client, client_id=client_id, now_ms=NOW, name=" "))
    with pytest.raises(ValueError, match="must not be negative"):
        write(
            conn,
            partial(update_client, client_id=client_id, now_ms=NOW, tokens_per_minute=-1),
        )
    assert get_client(conn, client_id).name == "demo"


def test_delete_client_removes_its_keys(conn: Connection) -> None:
    client_id = new_client(conn)
    kept = new_client(conn, "kept")
    write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    write(conn, partial(delete_client, client_id=client_id))
    assert [c.id for c in list_clients(conn)] == [kept]
    assert conn.execute(
        "SELECT count(*) FROM client_tokens WHERE client_id = ?", (client_id,)
    ).fetchall() == [(0,)]
    assert {k.client_id for k in active_keys(conn)} == {kept}


def test_delete_client_removes_its_stored_responses(conn: Connection) -> None:
    client_id = new_client(conn)
    kept = new_client(conn, "kept")
    for owner, response_id in ((client_id, "resp_gone"), (kept, "resp_kept")):
        write(
            conn,
            partial(
                insert_response,
                response=ResponseToStore(
                    id=response_id,
                    client_id=owner,
                    model="m",
                    provider="mock",
                    previous_response_id=None,
                    input_items=[],
                    response_json=b'{"id": "%s"}' % response_id.encode(),
                ),
                created_at_ms=NOW,
                expires_at_ms=NOW + 1,
            ),
        )
    write(conn, partial(delete_client, client_id=client_id))
    rows = conn.execute("SELECT id, client_id FROM stored_responses").fetchall()
    assert rows == [("resp_kept", kept)]


# --- the change counter ---------------------------------------------------------------------------


def test_auth_generation_bumps_on_every_relevant_change(db: str, conn: Connection) -> None:
    seen = [auth_generation(conn)]
    assert seen == [0]

    def bumped() -> bool:
        generation = auth_generation(conn)
        changed = generation > seen[-1]
        seen.append(generation)
        return changed

    client_id = new_client(conn)
    assert bumped()
    token, _ = write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    assert bumped()
    write(conn, partial(revoke_key, token_id=token.id, now_ms=NOW))
    assert bumped()
    write(conn, partial(revoke_key, token_id=token.id, now_ms=NOW + 1))
    assert not bumped()  # already revoked: nothing changed
    for change in (
        {"rate_limit_per_minute": 5},
        {"tokens_per_minute": 7},
        {"is_active": False},
        {"is_active": True},
        {"rate_limit_per_minute": None},
    ):
        write(conn, partial(update_client, client_id=client_id, now_ms=NOW, **change))  # type: ignore[arg-type]
        assert bumped(), change
    write(conn, partial(update_client, client_id=client_id, now_ms=NOW, is_active=True))
    assert not bumped()  # same value
    write(conn, partial(update_client, client_id=client_id, now_ms=NOW, name="renamed"))
    assert bumped()  # the key table also names the live feed's calls: a rename reloads it
    write(conn, partial(update_client, client_id=client_id, now_ms=NOW, name="renamed"))
    assert not bumped()  # same name
    write(conn, partial(revoke_client, client_id=client_id, now_ms=NOW))
    assert bumped()
    write(conn, partial(delete_client, client_id=client_id))
    assert bumped()
    # A direct change (say, by hand in sqlite3) is noticed too: the triggers do the counting.
    other = new_client(conn, "other")
    assert bumped()
    conn.execute("UPDATE client_tokens SET revoked_at = 1 WHERE client_id = ?", (other,))
    assert bumped()
    # Another connection, as a server beside the CLI, reads the same counter.
    reader = open_reader(db)
    try:
        assert auth_generation(reader) == seen[-1]
    finally:
        reader.close()
    (value, updated_at) = conn.execute(
        "SELECT value_json, updated_at FROM settings WHERE key = 'auth_generation'"
    ).fetchall()[0]
    assert value == str(seen[-1])
    assert isinstance(updated_at, int)
    assert updated_at > 1_600_000_000_000  # milliseconds, not seconds


def test_record_key_use_does_not_bump_and_never_goes_backwards(conn: Connection) -> None:
    client_id = new_client(conn)
    second, _ = write(conn, partial(add_key, client_id=client_id, now_ms=NOW))
    first_id = list_keys(conn, client_id)[0].id
    generation = auth_generation(conn)
    write(conn, partial(record_key_use, last_used={first_id: NOW + 100, second.id: NOW + 50}))
    write(conn, partial(record_key_use, last_used={first_id: NOW + 10, second.id: NOW + 70}))
    write(conn, partial(record_key_use, last_used={}))
    write(conn, partial(record_key_use, last_used={999_999: NOW}))  # a key deleted meanwhile
    used = {k.id: k.last_used_at for k in list_keys(conn, client_id)}
    assert used == {first_id: NOW + 100, second.id: NOW + 70}
    assert get_client(conn, client_id).last_used_at == NOW + 100
    assert auth_generation(conn) == generation


# --- through the writer, as the server does -------------------------------------------------------


async def test_writes_through_the_storage_writer(db: str) -> None:
    async with writer_on(db) as writer:
        client, token, plain = await writer.execute(
            partial(create_client, name="via-writer", now_ms=NOW)
        )
        with pytest.raises(LookupError):
            await writer.execute(partial(add_key, client_id="cl_missing", now_ms=NOW))
        await writer.execute(partial(record_key_use, last_used={token.id: NOW + 5}))
        generation = await writer.execute(auth_generation)
        keys = await writer.execute(active_keys)
    assert generation == 1 + 1  # the client row and its key
    assert [k.token_sha256 for k in keys] == [key_digest(plain)]
    reader = open_reader(db)
    try:
        assert get_client(reader, client.id).last_used_at == NOW + 5
    finally:
        reader.close()


async def test_client_usage(db: str) -> None:
    t0 = NOW // HOUR_MS * HOUR_MS
    records = [
        make_record(1, client_id="cl_a", ts_ms=t0 + 1_000),
        make_record(2, client_id="cl_a", ts_ms=t0 + 2_000, prompt_tokens=20, completion_tokens=1),
        make_record(
            3,
            client_id="cl_a",
            ts_ms=t0 + 3_000,
            status="error",
            http_status=502,
            prompt_tokens=None,
            completion_tokens=None,
            cost_usd=None,
        ),
        make_record(4, client_id="cl_a", ts_ms=t0 + 2 * HOUR_MS + 7),
        make_record(5, client_id="cl_b", ts_ms=t0 + 4_000, cost_usd=None),
        make_record(6, client_id=None, ts_ms=t0 + 5_000),
        make_record(7, client_id=None, ts_ms=t0 + 6_000),
    ]
    async with writer_on(db) as writer:
        await writer.write_requests(records)
        first_hour = await writer.execute(
            partial(client_usage, since_ms=t0 + 1_500, until_ms=t0 + 60_000)
        )
        everything = await writer.execute(
            partial(client_usage, since_ms=t0, until_ms=t0 + 3 * HOUR_MS)
        )
        nothing = await writer.execute(
            partial(client_usage, since_ms=t0 + HOUR_MS, until_ms=t0 + 2 * HOUR_MS)
        )
    assert nothing == []
    # The range overlaps the first hour only: the whole hour counts (the call at t0 + 1 s too),
    # busiest first.
    assert [u.client_id for u in first_hour] == ["cl_a", None, "cl_b"]
    a, anonymous, b = first_hour
    assert a == ClientUsage(
        client_id="cl_a",
        requests=3,
        errors=1,
        prompt_tokens=30,
        completion_tokens=6,
        cost_usd=pytest.approx(0.002),  # type: ignore[arg-type]
        last_call_ms=t0 + 3_000,  # the call two hours later is outside the range
    )
    assert anonymous.requests == 2
    assert anonymous.last_call_ms == t0 + 6_000
    assert b.requests == 1
    assert b.cost_usd is None  # unpriced, never 0
    assert b.last_call_ms == t0 + 4_000
    a_all = next(u for u in everything if u.client_id == "cl_a")
    assert a_all.requests == 4
    assert a_all.last_call_ms == t0 + 2 * HOUR_MS + 7


def test_client_usage_reads_last_call_from_the_client_index(conn: Connection) -> None:
    statement = "SELECT max(ts_ms) FROM llm_requests WHERE client_id = ? AND ts_ms < ?"
    if is_postgres(conn):
        # An empty table is cheapest to scan: forbid that to see which index the query can use.
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute("EXPLAIN " + statement, ("cl_a", NOW)).fetchall()
        conn.execute("RESET enable_seqscan")
    else:
        plan = conn.execute("EXPLAIN QUERY PLAN " + statement, ("cl_a", NOW)).fetchall()
    assert any("llm_requests_client_ts_ms" in str(row[-1]) for row in plan)
    assert client_usage(conn, 0, NOW) == []


# --- no plain key in the database -----------------------------------------------------------------


def test_plain_keys_never_reach_the_database(db: str, conn: Connection) -> None:
    plains: list[str] = []
    for i in range(5):
        client, token, plain = write(
            conn, partial(create_client, name=f"c{i}", key_name=f"k{i}", now_ms=NOW + i)
        )
        plains.append(plain)
        extra_token, extra = write(conn, partial(add_key, client_id=client.id, now_ms=NOW + i))
        plains.append(extra)
        write(conn, partial(record_key_use, last_used={token.id: NOW + 10}))
        write(conn, partial(revoke_key, token_id=extra_token.id, now_ms=NOW + 20))

    def files() -> bytes:
        if is_postgres(conn):
            # The server's files are not ours to read: every row of every table, as text.
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
            rows = [
                str(row[0])
                for (table,) in tables
                for row in conn.execute(f"SELECT t::text FROM {table} AS t").fetchall()
            ]
            return "\n".join(rows).encode()
        wal = Path(f"{db}-wal")
        return Path(db).read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    before = files()
    if not is_postgres(conn):
        # PASSIVE copies the WAL into the database file and leaves the WAL's pages in place.
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)  # type: ignore[attr-defined]
    after = files()
    for content in (before, after):
        for plain in plains:
            assert key_digest(plain).encode() in after  # the stored form is there...
            assert plain.encode() not in content  # ...the key is not,
            assert plain[7:-4].encode() not in content  # nor its secret middle part
            assert plain.encode("utf-16-le") not in content
