"""The fleet limiter bench's harness: both its gateways answer (the Redis one deciding through
Redis), the CPU reading moves, and the figures name each measure beside the in-memory one. The
benchmark itself runs with ``make bench``."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bench import bench_fleet_limiter
from tests.bench.bench_throughput import PIDS, bench_server, check, gateway_process
from tests.bench.loadgen import LoadResult
from tests.bench.table import render
from tests.conftest import CLIENT_KEY
from tests.redis_server import RedisServer


def test_the_redis_gateway_answers_under_its_limit(tmp_path: Path, redis: RedisServer) -> None:
    extra = f'[cluster]\nredis_url = "{redis.url}"\n'
    with (
        bench_server("upstream") as upstream,
        gateway_process(
            upstream,
            tmp_path,
            extra=extra,
            requests_per_minute=bench_fleet_limiter.REQUESTS_PER_MINUTE,
        ) as gateway,
    ):
        before = bench_fleet_limiter.process_cpu_s(PIDS[gateway])
        for _ in range(3):
            check(gateway, CLIENT_KEY)  # raises on anything but a chat answer
        assert bench_fleet_limiter.process_cpu_s(PIDS[gateway]) > before
    assert bench_fleet_limiter.redis_round_trip_ms(redis.port, samples=20) > 0
    assert bench_fleet_limiter.process_cpu_s(os.getpid()) > 0


def test_the_figures_set_the_fleet_beside_memory() -> None:
    fast = LoadResult(requests=10, rps=100.0, p50_ms=2.0, p99_ms=5.0, errors=0)
    slow = LoadResult(requests=10, rps=80.0, p50_ms=2.3, p99_ms=6.0, errors=0)
    results = bench_fleet_limiter.Results(
        at_1={bench_fleet_limiter.MEMORY: fast, bench_fleet_limiter.FLEET: slow},
        at_32={bench_fleet_limiter.MEMORY: fast, bench_fleet_limiter.FLEET: slow},
        cpu_us={bench_fleet_limiter.MEMORY: 400.0, bench_fleet_limiter.FLEET: 450.0},
        redis_ping_ms=0.12,
    )
    figures = bench_fleet_limiter.figures(results, "wrk")
    table = render(figures)
    assert "+0.30 ms" in table
    assert "80% of in memory" in table
    assert "+50 µs" in table
    assert "0.12 ms" in table
    assert [figure.met for figure in figures if figure.met is not None] == [True, True]
