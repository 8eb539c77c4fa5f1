"""Stored responses (``/v1/responses`` with ``store``): round trips through the one writer, client
isolation, expiry, the conversation walk, retention, backups and concurrent use."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import apsw
import msgspec
import pytest
import trio

import storage.migrations
from actors import retention as retention_module
from actors.retention import Retention
from proxy.errors import InvalidRequest
from storage import MIGRATIONS, ReadPool, migrate, open_connection
from storage.backup import backup_database
from storage.response_store import MAX_CONVERSATION_DEPTH, ResponseStore, ResponseToStore
from storage.responses import delete_expired_responses
from storage.retention import DAY_MS
from storage.writer import StorageWriter
from tests.conftest import StartGateway
from tests.factories import T0
from tests.storage_backends import query_rows, writer_on
from tests.test_writer import query

BEFORE_RESPONSES = 5  # the schema version before the stored responses table


class Clock:
    """A wall clock in Unix milliseconds that the test moves."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@asynccontextmanager
async def opened(
    db: str, clock: Clock, retention_days: int = 30
) -> AsyncIterator[tuple[ResponseStore, StorageWriter]]:
    async with writer_on(db) as writer:
        reads = ReadPool(db)
        try:
            yield (
                ResponseStore(writer, reads, retention_days=retention_days, clock_ms=clock),
                writer,
            )
        finally:
            reads.close()


def message(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}


def answer(
    response_id: str,
    text: str,
    *,
    client_id: str | None = "client-a",
    previous: str | None = None,
    said: str = "hello",
) -> ResponseToStore:
    output = [{"id": f"msg_{response_id}", "status": "completed", **message("assistant", text)}]
    return ResponseToStore(
        id=response_id,
        client_id=client_id,
        model="gemini-2.5-flash",
        provider="gemini",
        previous_response_id=previous,
        input_items=[message("user", said)],
        response_json=msgspec.json.encode(
            {"id": response_id, "object": "response", "status": "completed", "output": output}
        ),
    )


async def test_a_stored_response_reads_back_whole(database_url: str) -> None:
    clock = Clock()
    async with opened(database_url, clock) as (store, _):
        stored = answer("resp_1", "hi there", said="h\u00e9llo \U0001f600")
        await store.store(stored)
        got = await store.get("resp_1", "client-a")
        assert got is not None
        assert (got.id, got.client_id, got.model, got.provider) == (
            "resp_1",
            "client-a",
            "gemini-2.5-flash",
            "gemini",
        )
        assert (got.created_at_ms, got.expires_at_ms) == (T0, T0 + 30 * DAY_MS)
        assert got.previous_response_id is None
        assert got.response_json.encode() == stored.response_json
        assert got.input_items() == stored.input_items
        assert got.output_items() == got.response()["output"]
        assert got.output_items()[0]["content"][0]["text"] == "hi there"
        assert got.upstream_held is False
        assert await store.get("resp_missing", "client-a") is None
        # A passed-through response is marked as held by its provider too.
        await store.store(dataclasses.replace(answer("resp_2", "x"), upstream_held=True))
        held = await store.get("resp_2", "client-a")
        assert held is not None
        assert held.upstream_held is True
    # One row each, the items as JSON text.
    assert query_rows(database_url, "SELECT count(*) FROM stored_responses") == [(2,)]
    ((input_items,),) = query_rows(
        database_url, "SELECT input_items FROM stored_responses WHERE id = 'resp_1'"
    )
    assert "h\u00e9llo" in str(input_items)


async def test_bad_responses_are_refused_before_the_writer(database_url: str) -> None:
    async with opened(database_url, Clock()) as (store, _):
        for bad, words in (
            (answer("msg_1", "x"), "must start with 'resp_'"),
            (answer("resp_" + "x" * 200, "x"), "at most 128"),
            (answer("resp_ok", "x", previous="resp_ok"), "its own previous response"),
        ):
            with pytest.raises(ValueError, match=words):
                await store.store(bad)
        await store.store(answer("resp_1", "x"))
        with pytest.raises(ValueError, match="already stored"):
            await store.store(answer("resp_1", "again"))
        unencodable = answer("resp_2", "x")
        unencodable.input_items[0]["content"] = object()
        with pytest.raises(TypeError):
            await store.store(unencodable)
        assert await store.get("resp_2", "client-a") is None


async def test_a_response_is_visible_only_to_its_client(database_url: str) -> None:
    async with opened(database_url, Clock()) as (store, _):
        await store.store(answer("resp_a", "for a", client_id="client-a"))
        await store.store(answer("resp_anon", "for nobody", client_id=None))
        assert await store.get("resp_a", "client-b") is None
        assert await store.get("resp_a", None) is None
        assert await store.get("resp_anon", "client-a") is None
        anonymous = await store.get("resp_anon", None)
        assert anonymous is not None
        assert anonymous.client_id is None
        with pytest.raises(InvalidRequest) as refused:
            await store.conversation("resp_a", "client-b")
        assert refused.value.code == "previous_response_not_found"
        assert await store.delete("resp_a", "client-b") is False
        assert await store.get("resp_a", "client-a") is not None
        assert await store.delete("resp_a", "client-a") is True
        assert await store.delete("resp_a", "client-a") is False
        assert await store.get("resp_a", "client-a") is None


async def test_an_expired_response_is_gone_for_every_purpose(database_url: str) -> None:
    clock = Clock()
    async with opened(database_url, clock, retention_days=2) as (store, _):
        await store.store(answer("resp_old", "old"))
        clock.now_ms += 2 * DAY_MS - 1
        assert await store.get("resp_old", "client-a") is not None
        clock.now_ms += 1
        assert await store.get("resp_old", "client-a") is None
        with pytest.raises(InvalidRequest, match="'resp_old' not found"):
            await store.conversation("resp_old", "client-a")
        assert await store.delete("resp_old", "client-a") is False


async def test_a_shorter_retention_hides_older_responses_at_once(database_url: str) -> None:
    # Stored while 30 days were configured; the operator then lowered it to 1.
    clock = Clock()
    async with opened(database_url, clock, retention_days=30) as (store, _):
        await store.store(answer("resp_1", "one"))
    clock.now_ms += DAY_MS
    async with opened(database_url, clock, retention_days=1) as (store, _):
        assert await store.get("resp_1", "client-a") is None


async def test_the_conversation_is_every_item_oldest_first(database_url: str) -> None:
    clock = Clock()
    async with opened(database_url, clock) as (store, _):
        await store.store(answer("resp_1", "one", said="first"))
        clock.now_ms += 1000
        await store.store(answer("resp_2", "two", previous="resp_1", said="second"))
        clock.now_ms += 1000
        await store.store(answer("resp_3", "three", previous="resp_2", said="third"))
        items = await store.conversation("resp_3", "client-a")
        texts = [(item["role"], item["content"][0]["text"]) for item in items]
        assert texts == [
            ("user", "first"),
            ("assistant", "one"),
            ("user", "second"),
            ("assistant", "two"),
            ("user", "third"),
            ("assistant", "three"),
        ]
        assert len(await store.conversation("resp_1", "client-a")) == 2
        # A branch from the middle sees only its own past.
        await store.store(answer("resp_2b", "two-b", previous="resp_1", said="other"))
        branch = await store.conversation("resp_2b", "client-a")
        assert [item["content"][0]["text"] for item in branch] == ["first", "one", "other", "two-b"]


async def test_a_missing_link_or_a_loop_is_a_clear_400(database_url: str) -> None:
    db = database_url
    async with opened(db, Clock()) as (store, writer):
        await store.store(answer("resp_1", "one"))
        await store.store(answer("resp_2", "two", previous="resp_1"))
        await store.store(answer("resp_3", "three", previous="resp_2"))
        assert await store.delete("resp_2", "client-a")
        with pytest.raises(InvalidRequest) as missing:
            await store.conversation("resp_3", "client-a")
        error = missing.value
        assert (error.status, error.param, error.code) == (
            400,
            "previous_response_id",
            "previous_response_not_found",
        )
        assert "'resp_2'" in error.message
        assert "'resp_3'" in error.message
        # A loop can only come from outside the store; the walk still ends, with a clear error.
        await store.store(answer("resp_x", "x"))
        await store.store(answer("resp_y", "y", previous="resp_x"))
        await writer.execute(
            lambda conn: conn.execute(
                "UPDATE stored_responses SET previous_response_id = 'resp_y' WHERE id = 'resp_x'"
            )
        )
        with trio.fail_after(5), pytest.raises(InvalidRequest) as looped:
            await store.conversation("resp_y", "client-a")
        assert looped.value.code == "previous_response_chain_broken"
        assert "loops" in looped.value.message


async def test_a_conversation_past_the_depth_limit_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("storage.response_store.MAX_CONVERSATION_DEPTH", 5)
    assert MAX_CONVERSATION_DEPTH == 1000
    async with opened(database_url, Clock()) as (store, _):
        previous = None
        for i in range(6):
            await store.store(answer(f"resp_{i}", str(i), previous=previous))
            previous = f"resp_{i}"
        assert len(await store.conversation("resp_4", "client-a")) == 10
        with pytest.raises(InvalidRequest) as deep:
            await store.conversation("resp_5", "client-a")
        assert deep.value.code == "previous_response_chain_too_long"
        assert "more than 5 responses" in deep.value.message


async def test_retention_deletes_expired_responses_in_batches(database_url: str) -> None:
    db = database_url
    clock = Clock()
    async with opened(db, clock, retention_days=10) as (store, writer):
        for i in range(25):
            await store.store(answer(f"resp_old_{i}", "old"))
        clock.now_ms += 5 * DAY_MS
        await store.store(answer("resp_new", "new"))
        clock.now_ms += 5 * DAY_MS  # the old ones are exactly 10 days old now
        deleted = await writer.execute(
            lambda conn: delete_expired_responses(
                conn, now_ms=clock.now_ms, cutoff_ms=clock.now_ms - 10 * DAY_MS, limit=10
            )
        )
        assert deleted == 10
        # The retention actor finishes the job; the request log is kept forever meanwhile.
        retention = Retention(
            writer, 0, response_retention_days=10, pause_s=0, batch_rows=10, clock_ms=clock
        )
        assert await retention.prune_once() == 0
        stats = retention.statistics()
        assert (stats.responses_deleted, stats.last_responses_deleted) == (15, 15)
        assert query_rows(db, "SELECT id FROM stored_responses") == [("resp_new",)]
        assert await store.get("resp_new", "client-a") is not None


async def test_the_retention_actor_runs_for_responses_alone(database_url: str) -> None:
    db = database_url
    clock = Clock()
    async with opened(db, clock, retention_days=1) as (store, writer):
        await store.store(answer("resp_1", "one"))
        clock.now_ms += DAY_MS
        retention = Retention(
            writer,
            0,
            response_retention_days=1,
            first_run_after_s=0,
            run_every_s=60,
            clock_ms=clock,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            with trio.fail_after(10):
                while query_rows(db, "SELECT count(*) FROM stored_responses") != [(0,)]:
                    await trio.sleep(0.01)
            retention.close()
        assert retention.statistics().responses_deleted == 1


async def test_a_backup_holds_the_stored_responses(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with opened(str(db), Clock()) as (store, _):
        await store.store(answer("resp_1", "kept"))
    conn = open_connection(str(db))
    try:
        result = backup_database(conn, str(db), now_ms=T0, target=tmp_path / "copy.db")
    finally:
        conn.close()
    assert query(Path(result.path), "SELECT id, model FROM stored_responses") == [
        ("resp_1", "gemini-2.5-flash")
    ]


def test_a_version_5_database_gains_the_table_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = open_connection(str(tmp_path / "old.db"))
    try:
        monkeypatch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:BEFORE_RESPONSES])
        assert migrate(conn) == BEFORE_RESPONSES
        conn.execute(
            "INSERT INTO llm_requests (request_id, ts_ms, model, stream, status, http_status)"
            " VALUES ('r', 1, 'm', 0, 'ok', 200)"
        )
        monkeypatch.undo()
        assert migrate(conn) == len(MIGRATIONS)
        assert conn.execute("SELECT request_id FROM llm_requests").fetchall() == [("r",)]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(stored_responses)")]
        assert columns == [
            "id",
            "client_id",
            "created_at",
            "expires_at",
            "model",
            "provider",
            "previous_response_id",
            "input_items",
            "response",
            "upstream_held",
        ]
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(stored_responses)")}
        assert {"stored_responses_expires_at", "stored_responses_created_at"} <= indexes
        with pytest.raises(apsw.ConstraintError):
            conn.execute(
                "INSERT INTO stored_responses VALUES ('msg_1', '', 1, 2, 'm', 'p', NULL,"
                " '[]', '{}', 0)"
            )
    finally:
        conn.close()


async def test_many_stores_while_reading(database_url: str) -> None:
    clock = Clock()
    stores, readers = 200, 4
    async with opened(database_url, clock) as (store, writer):
        seen: list[int] = []

        async def keep_reading(done: Callable[[], bool]) -> None:
            while not done():
                found = 0
                for i in range(0, stores, 20):
                    found += await store.get(f"resp_{i}", "client-a") is not None
                seen.append(found)
                await trio.sleep(0)

        finished = False
        async with trio.open_nursery() as nursery:
            for _ in range(readers):
                nursery.start_soon(keep_reading, lambda: finished)
            async with trio.open_nursery() as writers:
                for i in range(stores):
                    writers.start_soon(store.store, answer(f"resp_{i}", f"answer {i}"))
            finished = True
        # Every store landed once, the reads saw a growing set and never failed.
        assert writer.statistics().closed is False
        assert seen
        assert all(0 <= found <= stores // 20 for found in seen)
        for i in range(stores):
            got = await store.get(f"resp_{i}", "client-a")
            assert got is not None
            assert got.output_items()[0]["content"][0]["text"] == f"answer {i}"


async def test_the_service_stores_responses_and_prunes_them_at_start(
    tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A response stored two days ago, already in the database the gateway opens.
    db = tmp_path / "gateway.db"
    clock = Clock(_now_ms() - 2 * DAY_MS)
    async with opened(str(db), clock, retention_days=30) as (store, _):
        await store.store(answer("resp_old", "old"))
    monkeypatch.setattr(retention_module, "FIRST_RUN_AFTER_S", 0.05)
    gateway = await start_gateway(
        {"responses": {"retention_days": 1}, "providers": {"ollama": {"enabled": False}}}
    )
    responses = gateway.gateway.responses
    await responses.store(answer("resp_new", "new"))
    assert await responses.get("resp_new", "client-a") is not None
    assert await responses.get("resp_old", "client-a") is None  # past the retention now
    retention = gateway.gateway.retention
    # The row is gone once the delete commits; the count moves when retention's task resumes.
    with trio.fail_after(10):
        while retention.statistics().responses_deleted == 0:
            await trio.sleep(0.02)
    assert query(db, "SELECT id FROM stored_responses") == [("resp_new",)]
    assert retention.statistics().responses_deleted == 1


def _now_ms() -> int:
    return int(time.time() * 1000)
