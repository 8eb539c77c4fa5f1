"""The batch insert (rows as one JSON array unpacked by SQLite, COPY on PostgreSQL) stores exactly
what binding one row does; on PostgreSQL, whose text cannot hold NUL, a NUL becomes U+FFFD."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records import RequestRecord
from storage.batch import INSERT_REQUEST, request_row, write_batch, write_rows_one_by_one
from storage.sql import Connection, is_postgres
from tests.factories import make_record
from tests.postgres_databases import fresh_database
from tests.storage_backends import connect

# Text as it can reach a record: from clients, upstream errors, anywhere (no lone surrogates:
# every text field is decoded from UTF-8 first).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
optional_texts = st.none() | texts
counts = st.none() | st.integers(0, 10**12)
floats = st.floats(0, 1e9, allow_nan=False, allow_infinity=False)

records = st.builds(
    lambda i, **fields: make_record(i, **fields),
    st.integers(0, 10**6),
    client_id=optional_texts,
    provider=optional_texts,
    model=texts,
    upstream_model=optional_texts,
    stream=st.booleans(),
    status=st.sampled_from(["ok", "error", "cancelled"]),
    http_status=st.integers(100, 599),
    error_type=optional_texts,
    error_message=optional_texts,
    prompt_tokens=counts,
    completion_tokens=counts,
    reasoning_tokens=counts,
    cached_tokens=counts,
    cache_write_tokens=counts,
    total_tokens=counts,
    cost_usd=st.none() | floats,
    has_images=st.booleans(),
    latency_ms=floats,
    ttft_ms=st.none() | floats,
    overhead_ms=floats,
    request_body=optional_texts,
    response_body=optional_texts,
    attempts=st.integers(1, 10),
    failed_attempts=st.none() | st.lists(texts, max_size=3).map(lambda xs: json.dumps(xs)),
)

COLUMNS = INSERT_REQUEST.split("(", 1)[1].split(")", 1)[0]


def _stored(conn: Connection) -> list[tuple[object, ...]]:
    rows = [tuple(row) for row in conn.execute(f"SELECT {COLUMNS} FROM llm_requests ORDER BY id")]
    conn.execute("DELETE FROM llm_requests")
    conn.execute("DELETE FROM usage_hourly")
    return rows


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def conn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Connection]:
    if request.param == "sqlite":
        where = str(tmp_path_factory.mktemp("batch") / "batch.db")
    else:
        where = fresh_database(request.getfixturevalue("postgres"))
    connection = connect(where)
    yield connection
    connection.close()


def _expected(conn: Connection, record: RequestRecord) -> tuple[object, ...]:
    row = tuple(request_row(record))
    if not is_postgres(conn):
        return row
    return tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row)


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(records, min_size=1, max_size=8))
def test_json_batch_stores_what_binding_stores(
    conn: Connection, batch: list[RequestRecord]
) -> None:
    _compare(conn, batch)


def test_text_with_nul_and_line_separators_survives(conn: Connection) -> None:
    record = make_record(1, error_message='a\x00b\u2028c"\\\U0001f600', request_body="{}\n")
    _compare(conn, [record])


def _compare(conn: Connection, batch: list[RequestRecord]) -> None:
    write_batch(conn, batch)
    via_json = _stored(conn)
    assert write_rows_one_by_one(conn, batch) == []
    via_binding = _stored(conn)
    assert via_json == via_binding
    for stored, record in zip(via_json, batch, strict=True):
        assert stored == _expected(conn, record)
