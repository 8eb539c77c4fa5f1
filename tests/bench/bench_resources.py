"""Resources of the gateway, against baselines measured in the same run.

- cold start: spawn to the first 200 on ``POST /v1/chat/completions`` (fresh temp database),
  median of 5; baseline: the bare hypercorn-trio app of ``servers.py``;
- RSS (``VmRSS``, process and children) idle after the first 200; under load it is sampled by
  ``bench_throughput`` during its points;
- StorageWriter rows/s, in process: 50,000 records in lists of at most 500 (as the RequestLogger
  sends them), then a barrier job; baseline: one ``executemany`` INSERT of the same rows into the
  same schema on a raw APSW connection, in one transaction (the ceiling).
Run: `make bench` (or `.venv/bin/python -m tests.bench.bench_resources`).
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from proxy.records import RequestRecord
from storage.batch import INSERT_REQUEST, request_row
from storage.connection import open_connection
from storage.migrations import migrate
from storage.writer import StorageWriter
from tests.bench.bench_throughput import (
    BODY,
    PATH,
    UPSTREAM_KEY,
    _stop,
    bench_server,
    write_gateway_config,
)
from tests.bench.rss import rss_mb
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY
from tests.factories import make_record

STARTS = 5
START_TIMEOUT = 30.0
RECORDS = 50_000
BATCH = 500


# --- processes ----------------------------------------------------------------------------------


@contextmanager
def started(kind: str, upstream: str) -> Iterator[tuple[subprocess.Popen[bytes], str, float]]:
    """Spawn the gateway (fresh database) or the bare app; wait for its first 200.

    Yields the process, its base URL and the seconds from spawn to that first 200.
    """
    with tempfile.TemporaryDirectory(prefix="bench-res-") as name:
        directory = Path(name)
        log_path = directory / "server.log"
        if kind == "gateway":
            config = write_gateway_config(upstream, directory)
            command = [
                sys.executable,
                "-m",
                "proxy.cli",
                "serve",
                "--port",
                "0",
                "--config",
                str(config),
                "--database",
                str(directory / "gateway.db"),
            ]
        else:
            command = [sys.executable, "-m", "tests.bench.servers", "bare"]
        with log_path.open("wb") as log:
            spawned = time.perf_counter()
            if kind == "gateway":
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
            else:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            url = _wait_for_url(kind, process, log_path, deadline)
            key = CLIENT_KEY if kind == "gateway" else UPSTREAM_KEY
            _poll_until_ok(url, key, process, deadline)
            yield process, url, time.perf_counter() - spawned
        finally:
            _stop(process)


def _wait_for_url(
    kind: str, process: subprocess.Popen[bytes], log_path: Path, deadline: float
) -> str:
    while True:
        for line in log_path.read_text(errors="replace").splitlines():
            if kind == "gateway" and "listening on http://" in line:
                return line.split("listening on ", 1)[1].split()[0]
            if kind == "bare" and line.startswith("PORT "):
                return f"http://127.0.0.1:{line.split()[1]}"
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{kind} did not start:\n{tail}")
        time.sleep(0.002)


def _poll_until_ok(url: str, key: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    """A tiny client: POST until the first 200 (refused connections and errors are retried)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    last = "no answer"
    while time.monotonic() < deadline and process.poll() is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("POST", PATH, body=BODY, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.002)
    raise RuntimeError(f"{url}: no 200 before the deadline (last: {last})")


# --- RSS --------------------------------------------------------------------------------------


def idle_rss(kind: str, upstream: str) -> float:
    """RSS half a second after the first 200 (under load: see bench_throughput)."""
    with started(kind, upstream) as (process, _, _):
        time.sleep(0.5)
        return rss_mb(process.pid)


# --- StorageWriter ------------------------------------------------------------------------------


async def _writer_rows_per_s(path: Path, records: list[RequestRecord]) -> float:
    writer = StorageWriter(str(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            started_at = time.perf_counter()
            for start in range(0, len(records), BATCH):
                await writer.write_requests(records[start : start + BATCH])
            await writer.execute(lambda conn: None)
            elapsed = time.perf_counter() - started_at
            # The barrier job runs after every pending record is flushed: all stored by now.
            written = writer.statistics().rows_written
        finally:
            writer.close()
    if written != len(records) or _count(path) != len(records):
        raise RuntimeError(f"writer stored {written} rows at the barrier, expected {len(records)}")
    return len(records) / elapsed


def _raw_rows_per_s(path: Path, records: list[RequestRecord]) -> float:
    conn = open_connection(str(path))
    try:
        migrate(conn)
        started_at = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_REQUEST, [request_row(record) for record in records])
        conn.execute("COMMIT")
        elapsed = time.perf_counter() - started_at
    finally:
        conn.close()
    if _count(path) != len(records):
        raise RuntimeError("raw insert lost rows")
    return len(records) / elapsed


def _count(path: Path) -> int:
    conn = open_connection(str(path), readonly=True)
    try:
        return int(conn.execute("SELECT count(*) FROM llm_requests").fetchall()[0][0])
    finally:
        conn.close()


def measure_writer() -> tuple[float, float]:
    """(StorageWriter rows/s, raw executemany rows/s), each on its own fresh database."""
    records = [make_record(i) for i in range(RECORDS)]
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as name:
        writer = trio.run(_writer_rows_per_s, Path(name) / "writer.db", records)
        raw = _raw_rows_per_s(Path(name) / "raw.db", records)
    return writer, raw


# --- the table ------------------------------------------------------------------------------------


def measure() -> list[Figure]:
    """Measure every figure with its baseline."""
    with bench_server("upstream") as upstream:
        cold: dict[str, list[float]] = {"gateway": [], "bare": []}
        for _ in range(STARTS):
            for kind in cold:
                with started(kind, upstream) as (_, _, seconds):
                    cold[kind].append(seconds)
        idle = {kind: idle_rss(kind, upstream) for kind in ("gateway", "bare")}
    writer, raw = measure_writer()
    g_cold, b_cold = statistics.median(cold["gateway"]), statistics.median(cold["bare"])
    section = "resources"
    return [
        Figure(
            section,
            f"cold start to the first 200 (median of {STARTS})",
            f"{g_cold:.2f} s",
            f"{b_cold:.2f} s bare stack",
            f"{g_cold / b_cold:.1f}x",
            "<= 1.5 s",
            g_cold <= 1.5,
        ),
        Figure(
            section,
            "RSS idle after the first call",
            f"{idle['gateway']:.0f} MB",
            f"{idle['bare']:.0f} MB bare stack",
            "",
            "<= 150 MB",
            idle["gateway"] <= 150,
        ),
        Figure(
            section,
            f"StorageWriter rows/s ({RECORDS // 1000}k in lists of {BATCH})",
            f"{writer:,.0f}",
            f"{raw:,.0f} raw executemany",
            f"{writer / raw:.2f}x",
            ">= 20,000",
            writer >= 20_000,
        ),
    ]


def main() -> None:
    """Measure and print this bench's part of the table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
