"""The PostgreSQL schema equals SQLite's: the catalogues compared table by table (columns in order,
nullability, defaults, keys, foreign keys, indexes, triggers), and every CHECK, UNIQUE and foreign
key proven by behaviour (the same row accepted or refused by both)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import apsw
import psycopg
import pytest

from storage import migrate as migrate_sqlite
from storage import open_connection
from storage.postgres_migrations import migrate as migrate_postgres
from tests.postgres_databases import fresh_database
from tests.postgres_server import PostgresServer, postgres_server

PgConnection = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def pg(postgres: PostgresServer) -> Iterator[PgConnection]:
    with psycopg.connect(fresh_database(postgres), autocommit=True, connect_timeout=5) as conn:
        migrate_postgres(conn)
        yield conn


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apsw.Connection]:
    conn = open_connection(str(tmp_path_factory.mktemp("sqlite") / "schema.db"))
    try:
        migrate_sqlite(conn)
        yield conn
    finally:
        conn.close()


# --- the catalogues -----------------------------------------------------------------------------


class Column(NamedTuple):
    """A column as both catalogues can say it."""

    name: str
    kind: str  # "identity", "integer", "text" or "real"
    not_null: bool
    default: str | None


def sqlite_tables(lite: apsw.Connection) -> list[str]:
    rows = lite.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def pg_tables(pg: PgConnection) -> list[str]:
    rows = pg.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_type = 'BASE TABLE' AND table_name <> 'schema_version' ORDER BY table_name"
    ).fetchall()
    return [str(row[0]) for row in rows]


def sqlite_columns(lite: apsw.Connection, table: str) -> list[Column]:
    rows = lite.execute(
        f"SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{table}')"
    ).fetchall()
    keys = sum(1 for row in rows if row[4])
    columns = []
    for name, kind, not_null, default, pk in rows:
        # INTEGER PRIMARY KEY is the rowid: never NULL, numbered when not given.
        rowid = kind == "INTEGER" and pk == 1 and keys == 1
        columns.append(
            Column(
                str(name),
                "identity" if rowid else str(kind).lower(),
                bool(not_null) or bool(pk),
                None if default is None else str(default),
            )
        )
    return columns


_PG_KINDS = {"bigint": "integer", "smallint": "integer", "text": "text", "double precision": "real"}


def pg_columns(pg: PgConnection, table: str) -> list[Column]:
    rows = pg.execute(
        "SELECT column_name, data_type, is_nullable, column_default, is_identity"
        " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s"
        " ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [
        Column(
            name,
            "identity" if identity == "YES" else _PG_KINDS[kind],
            nullable == "NO",
            None if default is None else re.sub(r"::[a-z ]+$", "", default),
        )
        for name, kind, nullable, default, identity in rows
    ]


def sqlite_flags(lite: apsw.Connection) -> set[tuple[str, str]]:
    """The 0/1 columns: those with SQLite's ``CHECK (x IN (0, 1))``."""
    flags = set()
    for table, sql in lite.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"):
        flags |= {(table, name) for name in re.findall(r"CHECK \((\w+) IN \(0, 1\)\)", sql)}
    return flags


def pg_flags(pg: PgConnection) -> set[tuple[str, str]]:
    rows = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND data_type = 'smallint'"
    ).fetchall()
    return {(str(table), str(column)) for table, column in rows}


class Constraints(NamedTuple):
    """What a table's keys, indexes, checks and triggers are, by columns and names."""

    primary_key: list[str]
    unique: set[tuple[str, ...]]
    foreign_keys: set[tuple[tuple[str, ...], str, tuple[str, ...], str, str]]
    indexes: dict[str, tuple[tuple[str, ...], bool, bool]]  # name: columns, unique, partial
    checks: int
    triggers: set[str]


def sqlite_constraints(lite: apsw.Connection, table: str) -> Constraints:
    info = lite.execute(
        f"SELECT name, pk FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
    )
    primary_key = [str(name) for name, _ in info]
    unique: set[tuple[str, ...]] = set()
    indexes: dict[str, tuple[tuple[str, ...], bool, bool]] = {}
    for name, is_unique, origin, partial in lite.execute(
        f"SELECT name, \"unique\", origin, partial FROM pragma_index_list('{table}')"
    ).fetchall():
        columns = tuple(
            str(row[0])
            for row in lite.execute(f"SELECT name FROM pragma_index_info('{name}') ORDER BY seqno")
        )
        if origin == "u":
            unique.add(columns)
        elif origin == "c":
            indexes[str(name)] = (columns, bool(is_unique), bool(partial))
    keys: dict[object, tuple[list[str], str, list[str], str, str]] = {}
    for key, target, source, to, on_update, on_delete in lite.execute(
        f'SELECT id, "table", "from", "to", on_update, on_delete'
        f" FROM pragma_foreign_key_list('{table}') ORDER BY id, seq"
    ).fetchall():
        entry = keys.setdefault(key, ([], str(target), [], str(on_delete), str(on_update)))
        entry[0].append(str(source))
        entry[2].append(str(to))
    (sql,) = lite.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchall()[0]
    triggers = lite.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?", (table,)
    ).fetchall()
    return Constraints(
        primary_key,
        unique,
        {
            (tuple(s), t, tuple(d), on_delete, on_update)
            for s, t, d, on_delete, on_update in keys.values()
        },
        indexes,
        str(sql).count("CHECK ("),
        {str(row[0]) for row in triggers},
    )


_PG_ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

_COLUMN_NAMES = """
array(SELECT a.attname::text FROM unnest({keys}) WITH ORDINALITY AS k(number, position)
      JOIN pg_attribute AS a ON a.attrelid = {table} AND a.attnum = k.number
      ORDER BY k.position)
"""


def pg_constraints(pg: PgConnection, table: str) -> Constraints:
    rows = pg.execute(
        (
            "SELECT contype, "
            + _COLUMN_NAMES.format(keys="conkey", table="conrelid")
            + ", confrelid::regclass::text, "
            + _COLUMN_NAMES.format(keys="confkey", table="confrelid")
            + ", confdeltype, confupdtype FROM pg_constraint WHERE conrelid = %s::regclass"
        ).encode(),
        (table,),
    ).fetchall()
    primary_key = [list(columns) for kind, columns, *_ in rows if kind == "p"]
    indexes = pg.execute(
        "SELECT c.relname, "
        + _COLUMN_NAMES.format(keys="i.indkey::int2[]", table="i.indrelid")
        + ", i.indisunique, i.indpred IS NOT NULL"
        " FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid)",
        (table,),
    ).fetchall()
    triggers = pg.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", (table,)
    ).fetchall()
    return Constraints(
        primary_key[0] if primary_key else [],
        {tuple(columns) for kind, columns, *_ in rows if kind == "u"},
        {
            (tuple(columns), target, tuple(to), _PG_ACTIONS[on_delete], _PG_ACTIONS[on_update])
            for kind, columns, target, to, on_delete, on_update in rows
            if kind == "f"
        },
        {
            str(name): (tuple(columns), unique, partial)
            for name, columns, unique, partial in indexes
        },
        sum(1 for kind, *_ in rows if kind == "c"),
        {str(row[0]) for row in triggers},
    )


def test_the_same_tables(lite: apsw.Connection, pg: PgConnection) -> None:
    assert pg_tables(pg) == sqlite_tables(lite)


def test_each_table_has_the_same_columns_in_the_same_order(
    lite: apsw.Connection, pg: PgConnection
) -> None:
    for table in sqlite_tables(lite):
        assert pg_columns(pg, table) == sqlite_columns(lite, table), table


def test_the_0_1_flags_are_smallints_and_nothing_else_is(
    lite: apsw.Connection, pg: PgConnection
) -> None:
    assert pg_flags(pg) == sqlite_flags(lite)
    assert len(sqlite_flags(lite)) == 7


def test_each_table_has_the_same_keys_indexes_checks_and_triggers(
    lite: apsw.Connection, pg: PgConnection
) -> None:
    for table in sqlite_tables(lite):
        assert pg_constraints(pg, table) == sqlite_constraints(lite, table), table


# --- behaviour: the same row accepted or refused by both -------------------------------------

# A valid row of each table (client_tokens' client "c0" is made by the fixture below).
VALID: Mapping[str, Mapping[str, object]] = {
    "users": {"username": "ann", "password_hash": "h", "created_at": 0, "updated_at": 0},
    "clients": {"id": "c1", "name": "n", "created_at": 0, "updated_at": 0},
    "client_tokens": {
        "client_id": "c0",
        "token_sha256": "a" * 64,
        "prefix": "sk-",
        "last4": "abcd",
        "created_at": 0,
    },
    "llm_requests": {
        "request_id": "r",
        "ts_ms": 0,
        "model": "m",
        "stream": 0,
        "status": "ok",
        "http_status": 200,
    },
    "usage_hourly": {"hour_ms": 3_600_000, "model": "m"},
    "provider_settings": {"provider": "p", "updated_at": 0},
    "model_settings": {"model": "m", "updated_at": 0},
    "settings": {"key": "k", "value_json": "{}", "updated_at": 0},
    "audit_log": {"ts_ms": 0, "username": "u", "action": "a"},
    "stored_responses": {
        "id": "resp_1",
        "client_id": "",
        "created_at": 0,
        "expires_at": 1,
        "model": "m",
        "provider": "p",
        "input_items": "[]",
        "response": "{}",
    },
    "budgets": {"scope": "provider", "name": "p", "updated_at": 0},
}

# (table, column, value, accepted): every CHECK of the schema, on both sides of its edge.
CHECKS = [
    ("users", "username", "", False),
    ("users", "role", "admin", True),
    ("users", "role", "root", False),
    ("users", "must_change_password", 1, True),
    ("users", "must_change_password", 2, False),
    ("clients", "id", "", False),
    ("clients", "is_active", 0, True),
    ("clients", "is_active", -1, False),
    ("clients", "rate_limit_per_minute", 0, True),
    ("clients", "rate_limit_per_minute", None, True),
    ("clients", "rate_limit_per_minute", -1, False),
    ("clients", "tokens_per_minute", 0, True),
    ("clients", "tokens_per_minute", -1, False),
    ("client_tokens", "token_sha256", "a" * 63, False),
    ("client_tokens", "token_sha256", "a" * 65, False),
    ("llm_requests", "stream", 1, True),
    ("llm_requests", "stream", 2, False),
    ("llm_requests", "status", "cancelled", True),
    ("llm_requests", "status", "done", False),
    ("llm_requests", "has_images", 2, False),
    ("llm_requests", "attempts", 1, True),
    ("llm_requests", "attempts", 0, False),
    ("llm_requests", "failed_attempts", '[{"provider": "p"}]', True),
    ("llm_requests", "failed_attempts", "[{", False),
    ("llm_requests", "failed_attempts", "NaN", False),
    ("llm_requests", "endpoint", "e" * 32, True),
    ("llm_requests", "endpoint", "e" * 33, False),
    ("llm_requests", "endpoint", "", False),
    ("llm_requests", "cache_write_tokens", 0, True),
    ("llm_requests", "cache_write_tokens", -1, False),
    ("usage_hourly", "hour_ms", 0, True),
    ("usage_hourly", "hour_ms", 3_600_001, False),
    ("usage_hourly", "hour_ms", 1_800_000, False),
    ("provider_settings", "enabled", None, True),
    ("provider_settings", "enabled", 2, False),
    ("provider_settings", "max_concurrency", 1, True),
    ("provider_settings", "max_concurrency", 0, False),
    ("provider_settings", "low_credit_threshold_usd", 0.0, True),
    ("provider_settings", "low_credit_threshold_usd", -0.01, False),
    ("model_settings", "enabled", 2, False),
    ("model_settings", "input_per_mtok", 0.0, True),
    ("model_settings", "input_per_mtok", -1.0, False),
    ("model_settings", "output_per_mtok", -1.0, False),
    ("model_settings", "cached_input_per_mtok", -1.0, False),
    ("settings", "value_json", ' "text" ', True),
    ("settings", "value_json", '"\\u0000"', True),
    ("settings", "value_json", "{", False),
    ("settings", "value_json", "", False),
    ("settings", "value_json", "{'a': 1}", False),
    ("audit_log", "detail_json", '{"a": [1, 2.5e3, null]}', True),
    ("audit_log", "detail_json", "nope", False),
    ("stored_responses", "id", "resp_" + "x" * 123, True),
    ("stored_responses", "id", "resp_" + "x" * 124, False),
    ("stored_responses", "id", "resp_", False),
    ("stored_responses", "id", "RESP_1", False),
    ("stored_responses", "id", "respx1", False),
    ("stored_responses", "id", "msg_1", False),
    ("stored_responses", "expires_at", 0, False),
    ("stored_responses", "upstream_held", 2, False),
    ("clients", "budget_day_usd", 0.01, True),
    ("clients", "budget_day_usd", 0, False),
    ("clients", "budget_month_usd", 0.01, True),
    ("clients", "budget_month_usd", -1, False),
    ("clients", "budget_warn_percent", 1, True),
    ("clients", "budget_warn_percent", 101, False),
    ("budgets", "scope", "global", False),  # the global row is named ''
    ("budgets", "scope", "team", False),
    ("budgets", "name", "", False),  # a provider has a name
    ("budgets", "day_usd", 5, False),  # a provider's budget is monthly
    ("budgets", "month_usd", 0.5, True),
    ("budgets", "month_usd", 0, False),
    ("budgets", "warn_percent", 100, True),
    ("budgets", "warn_percent", 0, False),
]


@pytest.fixture(scope="module")
def rows_in_both(lite: apsw.Connection, pg: PgConnection) -> tuple[apsw.Connection, PgConnection]:
    """Both databases, with the client "c0" the valid token row belongs to."""
    client = "INSERT INTO clients (id, name, created_at, updated_at) VALUES ('c0', 'c', 0, 0)"
    lite.execute(client)
    pg.execute(client)
    return lite, pg


def sqlite_accepts(lite: apsw.Connection, table: str, row: Mapping[str, object]) -> bool:
    """Whether SQLite takes ``row``; nothing kept either way."""
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    lite.execute("SAVEPOINT probe")
    try:
        lite.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))
    except apsw.ConstraintError:
        return False
    finally:
        lite.execute("ROLLBACK TO probe; RELEASE probe")
    return True


class _Probe(Exception):
    """Rolls a probe's transaction back after a row went in."""


def postgres_accepts(pg: PgConnection, table: str, row: Mapping[str, object]) -> bool:
    """Whether PostgreSQL takes ``row``; nothing kept either way."""
    names = ", ".join(row)
    marks = ", ".join("%s" for _ in row)
    try:
        with pg.transaction():
            pg.execute(
                f"INSERT INTO {table} ({names}) VALUES ({marks})".encode(), tuple(row.values())
            )
            raise _Probe
    except psycopg.errors.IntegrityError:
        return False
    except _Probe:
        return True


@pytest.mark.parametrize(("table", "column", "value", "accepted"), CHECKS)
def test_each_check_accepts_and_refuses_the_same_rows(
    rows_in_both: tuple[apsw.Connection, PgConnection],
    table: str,
    column: str,
    value: object,
    accepted: bool,
) -> None:
    lite, pg = rows_in_both
    row = {**VALID[table], column: value}
    assert sqlite_accepts(lite, table, VALID[table])
    assert postgres_accepts(pg, table, VALID[table])
    assert sqlite_accepts(lite, table, row) is accepted
    assert postgres_accepts(pg, table, row) is accepted


def test_every_check_has_a_case(lite: apsw.Connection) -> None:
    """A CHECK added to SQLite's schema without a case here fails this test."""
    checked: dict[str, set[str]] = {}
    for table, column, _, accepted in CHECKS:
        if not accepted:
            checked.setdefault(table, set()).add(column)
    for table in sqlite_tables(lite):
        assert len(checked.get(table, set())) == sqlite_constraints(lite, table).checks, table


@pytest.mark.parametrize(
    ("table", "row"),
    [
        ("client_tokens", {**VALID["client_tokens"], "client_id": "nobody"}),
        ("users", {**VALID["users"], "password_hash": None}),
        ("llm_requests", {**VALID["llm_requests"], "model": None}),
    ],
)
def test_foreign_keys_and_not_null_refuse_the_same_rows(
    rows_in_both: tuple[apsw.Connection, PgConnection], table: str, row: Mapping[str, object]
) -> None:
    lite, pg = rows_in_both
    assert not sqlite_accepts(lite, table, row)
    assert not postgres_accepts(pg, table, row)


# Statements run in order on both; the auth generation after each is compared.
AUTH_CHANGES = [
    "INSERT INTO clients (id, name, created_at, updated_at) VALUES ('a', 'a', 0, 0)",
    "INSERT INTO client_tokens (client_id, token_sha256, prefix, last4, created_at)"
    " VALUES ('a', '" + "b" * 64 + "', 'sk-', 'bbbb', 0)",
    "UPDATE clients SET name = 'renamed' WHERE id = 'a'",
    "UPDATE clients SET is_active = 0 WHERE id = 'a'",
    "UPDATE clients SET is_active = 0 WHERE id = 'a'",
    "UPDATE clients SET rate_limit_per_minute = 5 WHERE id = 'a'",
    "UPDATE client_tokens SET last_used_at = 9 WHERE client_id = 'a'",
    "UPDATE client_tokens SET revoked_at = 9 WHERE client_id = 'a'",
    "UPDATE client_tokens SET revoked_at = 9 WHERE client_id = 'a'",
    "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ('b', 'h', 0, 0)",
    "INSERT INTO clients (id, name, created_at, updated_at) VALUES ('z', 'z', 0, 0)",
    "DELETE FROM clients WHERE id = 'a'",  # and its token, by the cascade
]


def test_keys_cascade_and_the_auth_generation_moves_alike(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    lite = open_connection(str(tmp_path / "auth.db"))
    try:
        migrate_sqlite(lite)
        with psycopg.connect(fresh_database(postgres), autocommit=True) as pg:
            migrate_postgres(pg)
            generation = "SELECT value_json FROM settings WHERE key = 'auth_generation'"
            seen_lite, seen_pg = [], []
            for statement in AUTH_CHANGES:
                lite.execute(statement)
                pg.execute(statement.encode())
                seen_lite.append(lite.execute(generation).fetchall())
                seen_pg.append([tuple(row) for row in pg.execute(generation.encode())])
            tokens = "SELECT count(*) FROM client_tokens"
            assert lite.execute(tokens).fetchall() == [(0,)]
            assert [tuple(row) for row in pg.execute(tokens)] == [(0,)]
    finally:
        lite.close()
    assert seen_pg == seen_lite
    assert seen_lite[-1] == [("8",)]  # the last delete counts twice: the client, its token


def test_the_auth_generation_is_bumped_in_its_own_schema_whatever_the_search_path(
    postgres: PostgresServer,
) -> None:
    with psycopg.connect(fresh_database(postgres), autocommit=True) as pg:
        migrate_postgres(pg)
        pg.execute("CREATE SCHEMA elsewhere")
        pg.execute("CREATE TABLE elsewhere.settings (LIKE public.settings INCLUDING ALL)")
        pg.execute("SET search_path TO elsewhere, public")
        pg.execute(
            "INSERT INTO public.clients (id, name, created_at, updated_at) VALUES ('a', 'a', 0, 0)"
        )
        assert pg.execute(
            "SELECT value_json FROM public.settings WHERE key = 'auth_generation'"
        ).fetchone() == ("1",)
        assert pg.execute("SELECT count(*) FROM elsewhere.settings").fetchone() == (0,)
