"""What fleet-wide rate limits (Redis) cost a call, beside the in-memory limiter in the same run.

Two gateway processes (``llm-proxy serve``, logging on) at the bench upstream
(``tests.bench.servers``), the client under a requests-per-minute limit far above the load (so
every call is decided, none denied): one with the in-memory limiter, one with ``[cluster]
redis_url`` at a ``redis-server`` the bench starts (the Debian package ``make test`` installs).

Figures, each beside the in-memory gateway's: p50 at 1 connection (the latency a call's admission
adds: one round trip to Redis; target ≤ 0.5 ms), req/s and p50 at 32 connections (admissions
batched per round trip), and the gateway process's CPU per call at 32 connections (user + system
from ``/proc``, all its threads) as a difference in µs. Interleaved rounds, medians kept.
Run: `.venv/bin/python -m tests.bench.bench_fleet_limiter`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from tests.bench.bench_throughput import (
    BODY,
    PATH,
    PIDS,
    bench_server,
    check,
    gateway_process,
    interleaved_medians,
)
from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY
from tests.redis_server import redis_server

SECONDS: Final = 4.0  # per measured point
WARM_UP_S: Final = 1.0  # before each point, same load, not counted
ROUNDS: Final = 3  # interleaved, the median kept
CPU_SECONDS: Final = 3.0  # per CPU sample
CPU_ROUNDS: Final = 3
CONNECTIONS: Final = 32
ADDED_P50_TARGET_MS: Final = 0.5
# Never reached by the load (~10^4 calls a second at most), so every call is decided, none denied.
REQUESTS_PER_MINUTE: Final = 1_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class Gateway:
    """One gateway under load: its label and its chat URL (a point of ``interleaved_medians``,
    which posts to ``"" + path``)."""

    label: str
    path: str
    body: bytes = BODY


@dataclasses.dataclass(frozen=True, slots=True)
class Results:
    """What was measured: each gateway's load results at 1 and 32 connections, and its CPU per
    call at 32 (µs)."""

    at_1: dict[str, LoadResult]
    at_32: dict[str, LoadResult]
    cpu_us: dict[str, float]
    redis_ping_ms: float = 0.0  # PING's round trip from the bench, p50


MEMORY: Final = "in-memory limiter"
FLEET: Final = "fleet limiter (Redis)"


def redis_round_trip_ms(port: int, samples: int = 2000) -> float:
    """p50 of a PING to Redis on a plain blocking socket: the floor under any added latency."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as conn:
        for _ in range(samples):
            began = time.perf_counter()
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            if not conn.recv(64).startswith(b"+PONG"):
                raise RuntimeError("redis did not answer PING")
            times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_per_call_us(load: LoadGenerator, gateways: list[Gateway]) -> dict[str, float]:
    """Each gateway's CPU per call at 32 connections, µs: the median of interleaved samples."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"}
    samples: dict[str, list[float]] = {gateway.label: [] for gateway in gateways}
    for _ in range(CPU_ROUNDS):
        for gateway in gateways:
            pid = PIDS[gateway.path.removesuffix(PATH)]
            load.run(
                gateway.path, connections=CONNECTIONS, seconds=WARM_UP_S, body=BODY, headers=headers
            )
            before = process_cpu_s(pid)
            result = load.run(
                gateway.path,
                connections=CONNECTIONS,
                seconds=CPU_SECONDS,
                body=BODY,
                headers=headers,
            )
            spent = process_cpu_s(pid) - before
            samples[gateway.label].append(spent / max(result.requests, 1) * 1e6)
    return {label: statistics.median(values) for label, values in samples.items()}


def measure(load: LoadGenerator | None = None) -> list[Figure]:
    """Start Redis, the upstream and both gateways; measure; return the figures."""
    own = load is None
    load = load or LoadGenerator()
    try:
        with ExitStack() as stack:
            redis = stack.enter_context(redis_server())
            upstream = stack.enter_context(bench_server("upstream"))
            gateways = []
            for label, extra in ((MEMORY, ""), (FLEET, f'[cluster]\nredis_url = "{redis.url}"\n')):
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
                url = stack.enter_context(
                    gateway_process(
                        upstream, directory, extra=extra, requests_per_minute=REQUESTS_PER_MINUTE
                    )
                )
                check(url, CLIENT_KEY)
                gateways.append(Gateway(label, url + PATH))
            results = Results(
                at_1=_by_label(_medians(load, gateways, 1)),
                at_32=_by_label(_medians(load, gateways, CONNECTIONS)),
                cpu_us=cpu_per_call_us(load, gateways),
                redis_ping_ms=redis_round_trip_ms(redis.port),
            )
    finally:
        if own:
            load.close()
    return figures(results, load.name)


def _medians(
    load: LoadGenerator, gateways: list[Gateway], connections: int
) -> dict[Gateway, LoadResult]:
    return interleaved_medians(
        load,
        "",
        gateways,
        connections=connections,
        seconds=SECONDS,
        warm_up_s=WARM_UP_S,
        rounds=ROUNDS,
    )


def _by_label(results: dict[Gateway, LoadResult]) -> dict[str, LoadResult]:
    return {gateway.label: result for gateway, result in results.items()}


def figures(results: Results, loader: str) -> list[Figure]:
    """The fleet limiter's figures beside the in-memory limiter's."""
    section = (
        f"Fleet rate limits (Redis) against the in-memory limiter ({loader}, {SECONDS:g} s per "
        f"point, median of {ROUNDS} interleaved rounds)"
    )
    memory_1, fleet_1 = results.at_1[MEMORY], results.at_1[FLEET]
    memory_32, fleet_32 = results.at_32[MEMORY], results.at_32[FLEET]
    added_ms = fleet_1.p50_ms - memory_1.p50_ms
    cpu_memory, cpu_fleet = results.cpu_us[MEMORY], results.cpu_us[FLEET]
    errors = sum(r.errors for r in (*results.at_1.values(), *results.at_32.values()))
    return [
        Figure(
            section,
            "p50 at 1 connection",
            f"{fleet_1.p50_ms:.2f} ms",
            f"{memory_1.p50_ms:.2f} ms in memory",
            f"{added_ms:+.2f} ms",
            f"≤ +{ADDED_P50_TARGET_MS} ms",
            added_ms <= ADDED_P50_TARGET_MS,
        ),
        Figure(
            section,
            "Redis PING alone, p50",
            f"{results.redis_ping_ms:.2f} ms",
        ),
        Figure(
            section,
            f"req/s at {CONNECTIONS} connections",
            f"{fleet_32.rps:.0f}",
            f"{memory_32.rps:.0f} in memory",
            f"{fleet_32.rps / max(memory_32.rps, 1e-9):.0%} of in memory",
        ),
        Figure(
            section,
            f"p50 at {CONNECTIONS} connections",
            f"{fleet_32.p50_ms:.1f} ms",
            f"{memory_32.p50_ms:.1f} ms in memory",
            f"{fleet_32.p50_ms - memory_32.p50_ms:+.1f} ms",
        ),
        Figure(
            section,
            f"gateway CPU per call at {CONNECTIONS} connections",
            f"{cpu_fleet:.0f} µs",
            f"{cpu_memory:.0f} µs in memory",
            f"{cpu_fleet - cpu_memory:+.0f} µs",
        ),
        Figure(section, "errors under load", str(errors), "", "", "0", errors == 0),
    ]


def main() -> None:
    """Print this bench's table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
