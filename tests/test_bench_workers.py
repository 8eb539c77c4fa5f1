"""The workers bench's harness: both gateways start on one Redis, answer non-streamed calls and
streams through the bench upstream, and the figures print as ratios. The benchmark itself runs
with ``make bench``."""

from __future__ import annotations

from pathlib import Path

from tests.bench import bench_workers
from tests.bench.bench_throughput import bench_server, check
from tests.bench.loadgen import LoadResult
from tests.bench.stream_client import StreamResult
from tests.bench.table import render
from tests.conftest import CLIENT_KEY
from tests.redis_server import running_redis


def test_both_gateways_answer_calls_and_streams(tmp_path: Path) -> None:
    with running_redis() as redis_url, bench_server("upstream") as upstream:
        for workers in bench_workers.WORKER_COUNTS:
            with bench_workers.workers_gateway(upstream, tmp_path, workers, redis_url) as url:
                check(url, CLIENT_KEY)  # raises on anything but a chat completion
                result = bench_workers.streams(url, CLIENT_KEY, 20)
                assert result.completed == 20, result.error_summary
                assert result.gaps_ms
        log = (tmp_path / "workers-2.log").read_text()
        assert "worker=1" in log
        assert "worker=2" in log


def _streamed(gap_ms: float) -> StreamResult:
    return StreamResult(
        streams=1,
        completed=1,
        ttfts_ms=[1.0],
        gaps_ms=[gap_ms] * 10,
        errors=0,
        error_kinds={},
        elapsed_s=1.0,
        cpu_s=0.1,
        events=10,
    )


def test_the_figures_are_ratios_with_their_targets() -> None:
    rps = {
        1: LoadResult(requests=10, rps=1000.0, p50_ms=2.0, p99_ms=5.0, errors=0),
        2: LoadResult(requests=10, rps=1500.0, p50_ms=2.0, p99_ms=5.0, errors=0),
    }
    streamed = {"direct": _streamed(20.0), "1 workers": _streamed(25.0)}
    streamed["2 workers"] = _streamed(24.0)
    figures = bench_workers.figures(rps, streamed, "wrk")
    table = render(figures)
    assert "1.50x" in table
    assert ">= 1.4x" in table
    assert "+4.0 ms" in table
    assert all(figure.met is not False for figure in figures)
