"""The request log's ``endpoint``: which API a call came through, stored, filtered and exported."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import storage.migrations
from proxy.records import ENDPOINTS
from storage import MIGRATIONS, migrate, open_connection
from storage.analytics.export import csv_header, csv_lines, export_page, json_lines
from storage.analytics.request_log import request_detail, request_log
from storage.analytics.request_rows import REQUEST_COLUMNS
from storage.analytics.usage_filter import NO_FILTER
from storage.batch import write_batch, write_rows_one_by_one
from tests.factories import T0, make_record

ALL = (T0 - 1, T0 + 10**9)
BEFORE_ENDPOINTS = 4  # the schema version before the endpoint column


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "endpoint.db"))
    try:
        migrate(connection)
        yield connection
    finally:
        connection.close()


def test_the_known_endpoints() -> None:
    assert ENDPOINTS == ("chat", "responses", "messages", "embeddings")
    assert make_record(0).endpoint == "chat"  # the default: every call before this column


def test_a_version_4_log_upgrades_with_every_old_call_a_chat_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = open_connection(str(tmp_path / "old.db"))
    try:
        monkeypatch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:BEFORE_ENDPOINTS])
        assert migrate(conn) == BEFORE_ENDPOINTS
        old_insert = (
            "INSERT INTO llm_requests (request_id, ts_ms, client_id, provider, model, stream,"
            " status, http_status) VALUES (?, ?, 'c', 'openai', 'm', 0, 'ok', 200)"
        )
        for i in range(3):
            conn.execute(old_insert, (f"old-{i}", T0 + i))
        monkeypatch.undo()
        assert migrate(conn) == len(MIGRATIONS)
        rows = conn.execute("SELECT request_id, endpoint FROM llm_requests ORDER BY id").fetchall()
        assert rows == [("old-0", "chat"), ("old-1", "chat"), ("old-2", "chat")]
        index = conn.execute("SELECT name FROM pragma_index_info('llm_requests_endpoint_ts_ms')")
        assert [row[0] for row in index.fetchall()] == ["endpoint", "ts_ms"]
        # New rows say where they came from; an empty name is refused.
        write_batch(conn, [make_record(9, endpoint="responses")])
        (endpoint,) = conn.execute(
            "SELECT endpoint FROM llm_requests WHERE request_id = 'req-9'"
        ).fetchall()[0]
        assert endpoint == "responses"
        with pytest.raises(apsw.ConstraintError):
            conn.execute("UPDATE llm_requests SET endpoint = '' WHERE request_id = 'old-0'")
    finally:
        conn.close()


def test_each_record_keeps_its_endpoint_in_batches_and_row_by_row(conn: apsw.Connection) -> None:
    write_batch(conn, [make_record(1, endpoint="responses"), make_record(2)])
    rejected = write_rows_one_by_one(conn, [make_record(3, endpoint="messages")])
    assert rejected == []
    rows, _ = request_log(conn, *ALL)
    assert [(row.request_id, row.endpoint) for row in rows] == [
        ("req-3", "messages"),
        ("req-2", "chat"),
        ("req-1", "responses"),
    ]
    detail = request_detail(conn, rows[-1].id)
    assert detail is not None
    assert detail.to_json()["endpoint"] == "responses"


def test_the_log_and_the_export_filter_by_endpoint(conn: apsw.Connection) -> None:
    records = [make_record(i, endpoint="responses" if i % 3 == 0 else "chat") for i in range(9)]
    write_batch(conn, records)
    responses, _ = request_log(conn, *ALL, endpoint="responses")
    assert [row.request_id for row in responses] == ["req-6", "req-3", "req-0"]
    chat, _ = request_log(conn, *ALL, endpoint="chat", limit=4)
    assert {row.endpoint for row in chat} == {"chat"}
    # Paging keeps the filter.
    first, cursor = request_log(conn, *ALL, endpoint="responses", limit=2)
    rest, end = request_log(conn, *ALL, endpoint="responses", limit=2, cursor=cursor)
    assert [row.request_id for row in first + rest] == ["req-6", "req-3", "req-0"]
    assert end is None
    exported, _ = export_page(conn, *ALL, NO_FILTER, endpoint="responses")
    assert [row.request_id for row in exported] == ["req-0", "req-3", "req-6"]
    assert request_log(conn, *ALL, endpoint="embeddings")[0] == []
    with pytest.raises(ValueError, match="'endpoint' must be one of chat, responses"):
        request_log(conn, *ALL, endpoint="completions")  # type: ignore[arg-type]


def test_csv_and_json_exports_carry_the_endpoint(conn: apsw.Connection) -> None:
    write_batch(conn, [make_record(1, endpoint="responses")])
    rows, _ = request_log(conn, *ALL)
    assert "endpoint" in REQUEST_COLUMNS
    (parsed,) = csv.DictReader(io.StringIO(csv_header() + csv_lines(rows)))
    assert parsed["endpoint"] == "responses"
    assert json.loads(json_lines(rows))["endpoint"] == "responses"
    assert dataclasses.asdict(rows[0])["endpoint"] == "responses"
