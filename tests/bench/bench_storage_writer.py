"""The StorageWriter's throughput on PostgreSQL beside SQLite, the same records in the same run.

The real :class:`storage.writer.StorageWriter` with its production settings (batches of up to
500 records, 50 ms delay; COPY plus the rollup upsert in one transaction on PostgreSQL, one
json_each INSERT plus the upsert on SQLite) is fed ``RECORDS`` plausible records
(``tests.factories.spread_records``, made before the clock starts) in messages of 500, as the
RequestLogger sends them, as fast as it accepts them. The figure is records stored per second
from the first message until ``rows_written`` counts them all; the median of ``RUNS`` runs, each
on a fresh database.

SQLite: a file in WAL mode with ``synchronous = NORMAL`` (the gateway's settings) in a temporary
directory. PostgreSQL: Debian's server in a temporary cluster on loopback
(``tests/postgres_server.py``) with its default durability (fsync and synchronous commit on, as
an operator runs it), reached over TCP with a password, as a fleet reaches it.
Run: `.venv/bin/python -m tests.bench.bench_storage_writer`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from proxy.records import RequestRecord
from storage.writer import StorageWriter
from tests.bench.table import Figure, render
from tests.factories import spread_records
from tests.postgres_databases import fresh_database
from tests.postgres_server import postgres_server

RECORDS = 100_000
MESSAGE = 500  # the RequestLogger's largest batch
RUNS = 3
SECTION = f"storage writer ({RECORDS:,} records, median of {RUNS} runs)"


async def store_all(where: str, records: Sequence[RequestRecord]) -> float:
    """Seconds for a fresh writer on ``where`` to store ``records`` (opening it not counted)."""
    writer = StorageWriter(where)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        began = time.perf_counter()
        for start in range(0, len(records), MESSAGE):
            await writer.write_requests(records[start : start + MESSAGE])
        while writer.statistics().rows_written < len(records):
            await trio.sleep(0.005)
        elapsed = time.perf_counter() - began
        writer.close()
    stats = writer.statistics()
    assert (stats.rows_written, stats.rows_rejected) == (len(records), 0), stats
    return elapsed


def rows_per_second(fresh: Callable[[], str], records: Sequence[RequestRecord]) -> float:
    """The median rate over ``RUNS`` runs, each on the database ``fresh()`` makes."""
    rates = [len(records) / trio.run(store_all, fresh(), records) for _ in range(RUNS)]
    return statistics.median(rates)


def measure() -> list[Figure]:
    """Time the writer on SQLite, then on PostgreSQL, with the same records."""
    records = list(spread_records(RECORDS, seed=7))
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as directory:
        paths = (str(Path(directory) / f"run{n}.db") for n in range(RUNS))
        sqlite_rate = rows_per_second(lambda: next(paths), records)
    with postgres_server(durable=True) as server:
        postgres_rate = rows_per_second(lambda: fresh_database(server, "bench"), records)
    return [
        Figure(SECTION, "SQLite (WAL, synchronous=NORMAL)", f"{sqlite_rate:,.0f} rows/s"),
        Figure(
            SECTION,
            "PostgreSQL (loopback TCP, fsync on)",
            f"{postgres_rate:,.0f} rows/s",
            f"{sqlite_rate:,.0f} rows/s SQLite",
            f"{postgres_rate / sqlite_rate:.2f}x SQLite",
        ),
    ]


def main() -> None:
    """Measure and print this bench's part of the table."""
    began = time.monotonic()
    print(render(measure()))
    print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
