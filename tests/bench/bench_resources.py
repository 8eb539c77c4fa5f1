"""Resources of the gateway, against baselines measured in the same run.

- cold start: spawn to the first 200 on ``POST /v1/chat/completions`` (fresh temp database),
  median of 5; baseline: the bare hypercorn-trio app of ``servers.py``;
- RSS (``VmRSS``, process and children): idle after start, and the peak while ``wrk`` drives 32
  then 256 connections (sampled every 100 ms); baseline: the bare app under the same loads;
- logging cost: gateway req/s at 32 connections with logging on; there is no switch to turn the
  request log off, so the "off" figure is reported as not measured rather than emulated;
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
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
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
from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.conftest import CLIENT_KEY
from tests.factories import make_record

STARTS = 5
START_TIMEOUT = 30.0
LOAD_SECONDS = 5.0
WARM_UP = 1.0
LOADS = (32, 256)
SAMPLE_EVERY = 0.1
RECORDS = 50_000
BATCH = 500
NOT_MEASURED = "not measured: needs a logging switch"


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


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo.extend(int(child) for child in task.read_text().split())
    return pids


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, in MB."""
    total_kb = 0
    for current in _tree(pid):
        try:
            text = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def peak_rss_during(pid: int, work: Callable[[], LoadResult]) -> tuple[float, LoadResult]:
    """Run ``work`` while sampling RSS every 100 ms; return the peak and the work's result."""
    peak = [rss_mb(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = work()
    finally:
        stop.set()
        sampler.join()
    return max(peak[0], rss_mb(pid)), result


def measure_rss(
    kind: str, upstream: str, load: LoadGenerator
) -> tuple[float, dict[int, float], dict[int, LoadResult]]:
    """Idle RSS after start, then peak RSS and the load result at each concurrency."""
    peaks: dict[int, float] = {}
    results: dict[int, LoadResult] = {}
    with started(kind, upstream) as (process, url, _):
        time.sleep(0.5)
        idle = rss_mb(process.pid)
        key = CLIENT_KEY if kind == "gateway" else UPSTREAM_KEY
        headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}

        for connections in LOADS:

            def work(connections: int = connections) -> LoadResult:
                result = None
                for seconds in (WARM_UP, LOAD_SECONDS):
                    result = load.run(
                        url + PATH,
                        connections=connections,
                        seconds=seconds,
                        body=BODY,
                        headers=headers,
                    )
                assert result is not None
                return result

            peaks[connections], results[connections] = peak_rss_during(process.pid, work)
    return idle, peaks, results


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


def main() -> None:
    """Measure every figure with its baseline, print one table."""
    load = LoadGenerator()
    began = time.monotonic()
    with ExitStack() as stack:
        stack.callback(load.close)
        upstream = stack.enter_context(bench_server("upstream"))
        cold: dict[str, list[float]] = {"gateway": [], "bare": []}
        for _ in range(STARTS):
            for kind in cold:
                with started(kind, upstream) as (_, _, seconds):
                    cold[kind].append(seconds)
        rss = {kind: measure_rss(kind, upstream, load) for kind in ("gateway", "bare")}
    writer, raw = measure_writer()
    elapsed = time.monotonic() - began

    g_idle, g_peaks, g_results = rss["gateway"]
    b_idle, b_peaks, _ = rss["bare"]
    g_cold, b_cold = statistics.median(cold["gateway"]), statistics.median(cold["bare"])
    rows: list[tuple[str, str, str, str, str]] = []

    def row(what: str, gateway: float, baseline: float, fmt: str, target: str, ok: bool) -> None:
        ratio = f"{gateway / baseline:.2f}x" if baseline else "-"
        verdict = "meets" if ok else "MISSES"
        rows.append(
            (what, format(gateway, fmt), format(baseline, fmt), ratio, f"{target} {verdict}")
        )

    row("cold start to 1st 200, s (median/5)", g_cold, b_cold, ".3f", "<= 1.5 s", g_cold <= 1.5)
    row("RSS idle, MB", g_idle, b_idle, ".1f", "<= 150 MB", g_idle <= 150)
    for connections in LOADS:
        peak = g_peaks[connections]
        row(
            f"RSS peak at {connections} conns, MB",
            peak,
            b_peaks[connections],
            ".1f",
            "<= 150 MB",
            peak <= 150,
        )
    rows.append(
        (
            "req/s at 32, logging on vs off",
            f"{g_results[32].rps:.0f}",
            NOT_MEASURED,
            "-",
            "cost <= 10% (unknown)",
        )
    )
    row("StorageWriter rows/s vs raw APSW", writer, raw, ".0f", ">= 20,000", writer >= 20_000)

    print(
        f"resources: cold start (median of {STARTS}), RSS (VmRSS incl. children, 100 ms samples, "
        f"{WARM_UP:g} s warm-up + {LOAD_SECONDS:g} s per load), StorageWriter "
        f"({RECORDS:,} records in lists of {BATCH}); load: {load.name}; whole bench {elapsed:.0f} s"
    )
    print(
        "baselines: bare hypercorn-trio app (cold start, RSS); one raw APSW executemany "
        "transaction (writer)"
    )
    print(f"{'measure':<37}{'gateway':>11}{'baseline':>38}{'ratio':>8}  target")
    for what, gateway, baseline, ratio, target in rows:
        print(f"{what:<37}{gateway:>11}{baseline:>38}{ratio:>8}  {target}")
    headroom = writer / max(g_results[32].rps, 1e-9)
    print(
        f"gateway errors under load: {sum(r.errors for r in g_results.values())}; "
        f"StorageWriter rows/s / gateway req/s at 32: {headroom:.0f}x (capacity, not a cost)"
    )


if __name__ == "__main__":
    main()
