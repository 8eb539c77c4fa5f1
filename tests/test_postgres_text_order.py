"""Text sorts as on SQLite whatever the PostgreSQL database's collation.

SQLite compares text by its bytes (BINARY); a PostgreSQL database compares by its collation,
which on a real server is usually a language's (``en_US.UTF-8``, ICU): case and punctuation then
count for little, and the dashboard's lists, breakdown ties and grouped series would come out in
another order on each backend. The test cluster's databases are ``C.UTF-8``, so this makes one
with ICU's English order.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import psycopg
import pytest

from storage.analytics.aggregates import breakdown, timeseries
from storage.batch import write_batch
from storage.model_settings import list_model_settings, put_model_settings
from storage.provider_settings import list_provider_settings, put_provider_settings
from storage.queries import client_usage
from storage.settings_store import get_settings, put_settings
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.factories import T0, make_record
from tests.postgres_server import PostgresServer
from tests.storage_backends import connect

# Byte order (Python's, SQLite's): upper case first, '-' before '_', then letters, then 'Ä'.
NAMES = ["B-model", "a-model", "a_model", "amodel", "b", "\u00c4rger"]
HOUR_MS = 3_600_000


@pytest.fixture
def english(postgres: PostgresServer) -> Iterator[Connection]:
    """A migrated connection to a database that collates as English (ICU)."""
    with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(
            b"CREATE DATABASE english_order TEMPLATE template0"
            b" LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        )
    conn = connect(postgres.url.rsplit("/", 1)[0] + "/english_order")
    try:
        yield conn
    finally:
        conn.close()
        with psycopg.connect(postgres.url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(b"DROP DATABASE english_order")


def test_the_database_really_collates_as_english(english: Connection) -> None:
    rows = english.execute("SELECT x FROM (VALUES ('B'), ('a')) AS v (x) ORDER BY x").fetchall()
    assert [row[0] for row in rows] == ["a", "B"]  # else this file proves nothing


def test_lists_and_analytics_sort_text_by_its_bytes(english: Connection) -> None:
    shuffled = [NAMES[i] for i in (3, 0, 5, 1, 4, 2)]
    for name in shuffled:
        in_immediate_transaction(english, partial(put_model_settings, model=name, now_ms=T0))
        in_immediate_transaction(english, partial(put_provider_settings, provider=name, now_ms=T0))
    keys = ["ui.a.c", "ui.a_b", "ui.ab", "ui.b"]  # settings keys allow less
    in_immediate_transaction(
        english, partial(put_settings, values=dict.fromkeys(reversed(keys), 1), now_ms=T0)
    )
    # One call per name and client (a tie everywhere), in one hour.
    records = [
        make_record(i, ts_ms=T0 + i, model=name, client_id=name) for i, name in enumerate(shuffled)
    ]
    write_batch(english, records)
    since, until = T0 // HOUR_MS * HOUR_MS, T0 + HOUR_MS
    assert [row.model for row in list_model_settings(english)] == NAMES
    assert [row.provider for row in list_provider_settings(english)] == NAMES
    assert [key for key in get_settings(english) if key.startswith("ui.")] == keys
    assert [row.key for row in breakdown(english, "model", since, until)] == NAMES
    assert [row.key for row in breakdown(english, "client", since, until, limit=3)] == NAMES[:3]
    grouped = timeseries(english, since, until, "hour", "model")
    assert [point.group for point in grouped] == NAMES
    assert [usage.client_id for usage in client_usage(english, since, until)] == NAMES
