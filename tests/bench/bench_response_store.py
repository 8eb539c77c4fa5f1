"""The store of ``/v1/responses`` responses: store, get and conversation walks, beside the bare
writer job and read-pool call each of them rides on.

A fresh database in a temp directory, the real StorageWriter and ReadPool. Each stored response is
~3 KB (a user message in, one assistant message out, the response object); every tenth starts a
new conversation, so the others chain to the one before. Stores run 64 at a time, as concurrent
calls would; gets and walks one after another (their latency). Baselines from the same run: a
writer job that does nothing (``execute``) and a read-pool call that does nothing, the floor
under a store and under a read.
Run: `.venv/bin/python -m tests.bench.bench_response_store`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import apsw
import msgspec
import trio

from storage.reads import ReadPool
from storage.response_store import ResponseStore, ResponseToStore
from storage.writer import StorageWriter
from tests.bench.table import Figure, render

SECTION: Final = "stored responses (/v1/responses store)"
COUNT: Final = 5000
CONCURRENCY: Final = 64
CHAIN: Final = 10
TEXT: Final = "lorem ipsum " * 100


def _response(i: int) -> ResponseToStore:
    output = [
        {
            "type": "message",
            "id": f"msg_{i}",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": TEXT, "annotations": []}],
        }
    ]
    return ResponseToStore(
        id=f"resp_{i}",
        client_id="client-a",
        model="mock",
        provider="mock",
        previous_response_id=f"resp_{i - 1}" if i % CHAIN else None,
        input_items=[{"role": "user", "content": TEXT}],
        response_json=msgspec.json.encode(
            {"id": f"resp_{i}", "object": "response", "status": "completed", "output": output}
        ),
    )


def _nothing(conn: apsw.Connection) -> None:
    """A job, or a read, that does no work."""


async def _concurrently(count: int, one: Callable[[int], Awaitable[object]]) -> float:
    """Seconds to run ``one(i)`` for every i, ``CONCURRENCY`` at a time."""
    slots = trio.Semaphore(CONCURRENCY)

    async def run(i: int) -> None:
        async with slots:
            await one(i)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(run, i)
    return time.perf_counter() - started


async def _each_us(indexes: range, one: Callable[[int], Awaitable[object]]) -> float:
    """Mean microseconds of ``one(i)`` over ``indexes``, one after another."""
    started = time.perf_counter()
    for i in indexes:
        await one(i)
    return (time.perf_counter() - started) * 1e6 / len(indexes)


async def _measure(path: str) -> list[Figure]:
    writer = StorageWriter(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        reads = ReadPool(path)
        store = ResponseStore(writer, reads, retention_days=30)
        try:
            bare_job_s = await _concurrently(COUNT, lambda i: writer.execute(_nothing))
            store_s = await _concurrently(COUNT, lambda i: store.store(_response(i)))
            bare_read_us = await _each_us(range(COUNT), lambda i: reads.run(_nothing))
            get_us = await _each_us(range(COUNT), lambda i: store.get(f"resp_{i}", "client-a"))
            walk_us = await _each_us(
                range(CHAIN - 1, COUNT, CHAIN),
                lambda i: store.conversation(f"resp_{i}", "client-a"),
            )
        finally:
            reads.close()
            writer.close()
    return [
        Figure(
            SECTION,
            f"store, {CONCURRENCY} at a time",
            f"{COUNT / store_s:,.0f} /s",
            f"{COUNT / bare_job_s:,.0f} /s (empty job)",
            f"{store_s / bare_job_s:.1f}x the job",
        ),
        Figure(
            SECTION,
            "get by id",
            f"{get_us:,.0f} us",
            f"{bare_read_us:,.0f} us (empty read)",
            f"+{get_us - bare_read_us:,.0f} us",
        ),
        Figure(
            SECTION,
            f"conversation of {CHAIN} responses",
            f"{walk_us:,.0f} us",
            f"{bare_read_us:,.0f} us (empty read)",
            f"+{walk_us - bare_read_us:,.0f} us",
        ),
    ]


def measure() -> list[Figure]:
    """Store, read and walk ``COUNT`` responses in a fresh database; the figures."""
    with tempfile.TemporaryDirectory(prefix="bench-responses-") as directory:
        return trio.run(_measure, str(Path(directory) / "responses.db"))


if __name__ == "__main__":
    print(render(measure()))
