"""The benchmark harness still works: its servers answer, its clients parse, its table renders.

The benchmarks themselves run with ``make bench``; these checks keep them from rotting unseen.
"""

from __future__ import annotations

from tests.bench.bench_streaming import STREAM_BODY
from tests.bench.bench_throughput import UPSTREAM_KEY, bench_server, check
from tests.bench.loadgen import parse_wrk
from tests.bench.servers import STREAM_CHUNKS
from tests.bench.stream_client import run_streams
from tests.bench.table import Figure, render

WRK_OUTPUT = """Running 1s test @ http://127.0.0.1:1234
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    25.00ms    3.00ms  40.00ms   90.00%
  Latency Distribution
     50%   24.50ms
     75%   26.00ms
     90%   28.00ms
     99%   39.50ms
  1234 requests in 1.00s, 500.00KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   1234.00
Transfer/sec:    500.00KB
"""


def test_wrk_output_is_parsed() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.rps, result.p50_ms, result.p99_ms) == (1234, 1234.0, 24.5, 39.5)
    assert result.errors == 6


def test_table_renders_sections_and_verdicts() -> None:
    table = render(
        [
            Figure("one", "a metric", "1 ms", "2 ms direct", "+1 ms", "<= 2 ms", True),
            Figure("one", "another", "5", target="0", met=False),
            Figure("two", "info only", "3"),
        ]
    )
    lines = table.splitlines()
    assert lines[1].startswith("-- one ")
    assert lines[4].startswith("-- two ")
    assert lines[2].endswith("ok")
    assert lines[3].endswith("MISSED")
    assert lines[5].rstrip().endswith("3")


def test_servers_answer_completions_and_streams() -> None:
    with bench_server("upstream") as upstream, bench_server("bare") as bare:
        for url in (upstream, bare):
            check(url, UPSTREAM_KEY)
            result = run_streams(url, 3, STREAM_BODY, UPSTREAM_KEY, expected=STREAM_CHUNKS)
            assert (result.completed, result.errors) == (3, 0), result.error_summary
            assert len(result.gaps_ms) == 3 * (STREAM_CHUNKS - 1)
            assert result.events == 3 * (STREAM_CHUNKS + 2)  # the usage chunk and [DONE] too
