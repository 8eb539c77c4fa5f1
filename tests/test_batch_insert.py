"""The batch insert (rows as one JSON array unpacked by SQLite) stores exactly what binding does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import apsw
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.records import RequestRecord
from storage import open_connection
from storage.batch import INSERT_REQUEST, request_row, write_batch
from storage.migrations import migrate
from tests.factories import make_record

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


def _stored(conn: apsw.Connection) -> list[tuple[object, ...]]:
    rows = list(conn.execute(f"SELECT {COLUMNS} FROM llm_requests ORDER BY id"))
    conn.execute("DELETE FROM llm_requests; DELETE FROM usage_hourly")
    return rows


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path_factory.mktemp("batch") / "batch.db"))
    migrate(connection)
    yield connection
    connection.close()


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(records, min_size=1, max_size=8))
def test_json_batch_stores_what_binding_stores(
    conn: apsw.Connection, batch: list[RequestRecord]
) -> None:
    _compare(conn, batch)


def test_text_with_nul_and_line_separators_survives(conn: apsw.Connection) -> None:
    record = make_record(1, error_message='a\x00b\u2028c"\\\U0001f600', request_body="{}\n")
    _compare(conn, [record])


def _compare(conn: apsw.Connection, batch: list[RequestRecord]) -> None:
    write_batch(conn, batch)
    via_json = _stored(conn)
    for record in batch:
        conn.execute(INSERT_REQUEST, request_row(record))
    via_binding = _stored(conn)
    assert via_json == via_binding
    for stored, record in zip(via_json, batch, strict=True):
        assert stored == tuple(request_row(record))
