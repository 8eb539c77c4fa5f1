"""``[server] workers = 2`` against ``workers = 1``, both in the same run on this machine.

Two gateways (``llm-proxy serve``, logging on, each with its own database) share one
``redis-server`` started here and the fake upstream of ``tests.bench.servers``; they differ only in
``[server] workers``. Measured:

- non-streamed ``POST /v1/chat/completions`` req/s at 32 connections (``wrk``), the two gateways
  interleaved over ``ROUNDS`` rounds and the median kept (one server measured twice in a row
  differs by 10-20% here) — target: 2 workers >= 1.4x one, on 2 cores;
- 1,000 concurrent streams (``tests.bench.stream_client``) straight to the fake upstream, then
  through each gateway: the added inter-chunk gap p99 with 2 workers — target <= 10 ms.

Everything shares the machine's cores (the upstream, wrk, the stream client): read the ratios.
Run: `.venv/bin/python -m tests.bench.bench_workers`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.bench.bench_streaming import STREAM_BODY, _pct
from tests.bench.bench_throughput import (
    START_TIMEOUT,
    UPSTREAM_KEY,
    _stop,
    bench_server,
    check,
    measure_point,
    median_result,
    write_gateway_config,
)
from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.bench.servers import STREAM_CHUNKS
from tests.bench.stream_client import StreamResult, raise_nofile_limit, run_streams
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY
from tests.redis_server import running_redis

CONNECTIONS = 32
ROUNDS = 3
STREAMS = 1_000
WARM_UP_STREAMS = 50
SETTLE_S = 0.5
SPEEDUP_TARGET = 1.4
ADDED_GAP_P99_TARGET_MS = 10.0
WORKER_COUNTS = (1, 2)


def write_workers_config(upstream: str, directory: Path, workers: int, redis_url: str) -> Path:
    """The throughput bench's gateway config with ``workers`` processes sharing ``redis_url``."""
    config = write_gateway_config(
        upstream,
        directory,
        name=f"workers-{workers}",
        extra=f'[cluster]\nredis_url = "{redis_url}"\n',
    )
    text = config.read_text()
    config.write_text(text.replace("[server]\n", f"[server]\nworkers = {workers}\n", 1))
    return config


@contextmanager
def workers_gateway(upstream: str, directory: Path, workers: int, redis_url: str) -> Iterator[str]:
    """``llm-proxy serve --port 0`` with ``workers`` processes; its base URL once all listen."""
    config = write_workers_config(upstream, directory, workers, redis_url)
    log_path = directory / f"workers-{workers}.log"
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
        str(directory / f"workers-{workers}.db"),
    ]
    # One worker says "listening on", a supervisor "N workers listening on" once all do.
    ready = f"{workers} workers listening on http://" if workers > 1 else "listening on http://"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for line in log_path.read_text(errors="replace").splitlines():
                if ready in line:
                    yield line.split("listening on ", 1)[1].split()[0]
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gateway with {workers} workers did not start:\n{tail}")
            time.sleep(0.02)
    finally:
        _stop(process)


def streams(url: str, key: str, count: int) -> StreamResult:
    """``count`` concurrent streams, one connection each, read to their end."""
    return run_streams(url, count, STREAM_BODY, key, expected=STREAM_CHUNKS)


def measure(load: LoadGenerator | None = None) -> list[Figure]:
    """Start Redis, the upstream and both gateways; measure; the figures."""
    own = load is None
    load = load or LoadGenerator()
    raise_nofile_limit()  # before the servers start: they inherit it
    rps: dict[int, LoadResult] = {}
    streamed: dict[str, StreamResult] = {}
    try:
        with ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            redis_url = stack.enter_context(running_redis())
            upstream = stack.enter_context(bench_server("upstream"))
            gateways = {
                workers: stack.enter_context(
                    workers_gateway(upstream, directory, workers, redis_url)
                )
                for workers in WORKER_COUNTS
            }
            for url in gateways.values():
                check(url, CLIENT_KEY)
            runs: dict[int, list[LoadResult]] = {workers: [] for workers in WORKER_COUNTS}
            for _ in range(ROUNDS):
                for workers, url in gateways.items():
                    runs[workers].append(measure_point(load, url, CLIENT_KEY, CONNECTIONS))
            rps = {workers: median_result(measured) for workers, measured in runs.items()}
            targets = {"direct": (upstream, UPSTREAM_KEY)}
            targets |= {f"{w} workers": (url, CLIENT_KEY) for w, url in gateways.items()}
            for url, key in targets.values():
                streams(url, key, WARM_UP_STREAMS)
            for name, (url, key) in targets.items():
                time.sleep(SETTLE_S)
                streamed[name] = streams(url, key, STREAMS)
    finally:
        if own:
            load.close()
    return figures(rps, streamed, load.name)


def figures(
    rps: dict[int, LoadResult], streamed: dict[str, StreamResult], loader: str
) -> list[Figure]:
    """The table's rows: the two ratios and what they come from."""
    section = (
        f"workers = 2 against workers = 1 (one Redis; {loader} at {CONNECTIONS} connections, "
        f"median of {ROUNDS} interleaved rounds; {STREAMS:,} streams)"
    )
    one, two = rps[1], rps[2]
    speedup = two.rps / max(one.rps, 1e-9)
    out = [
        Figure(
            section,
            f"non-streamed req/s at {CONNECTIONS}, 2 workers",
            f"{two.rps:.0f}",
            f"{one.rps:.0f} with 1 worker",
            f"{speedup:.2f}x",
            f">= {SPEEDUP_TARGET:g}x",
            speedup >= SPEEDUP_TARGET,
        ),
        Figure(
            section,
            f"p99 at {CONNECTIONS}, 2 workers",
            f"{two.p99_ms:.1f} ms",
            f"{one.p99_ms:.1f} ms with 1 worker",
        ),
    ]
    direct_p99 = _pct(streamed["direct"].gaps_ms, 99)
    for name in ("1 workers", "2 workers"):
        result = streamed[name]
        added = _pct(result.gaps_ms, 99) - direct_p99
        judged = name == "2 workers"
        out.append(
            Figure(
                section,
                f"added inter-chunk gap p99, {name.replace('1 workers', '1 worker')}",
                f"{added:+.1f} ms",
                f"{direct_p99:.1f} ms direct",
                f"{result.errors} incomplete",
                f"<= {ADDED_GAP_P99_TARGET_MS:g} ms" if judged else "",
                (added <= ADDED_GAP_P99_TARGET_MS and result.errors == 0) if judged else None,
            )
        )
    errors = one.errors + two.errors + sum(r.errors for r in streamed.values())
    out.append(Figure(section, "errors under load", str(errors), "", "", "0", errors == 0))
    return out


def main() -> None:
    """Measure and print this bench's part of the table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
