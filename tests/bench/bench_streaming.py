"""Streaming through the gateway against the same load sent straight to the fake upstream.

1,000 concurrent streamed ``POST /v1/chat/completions`` (one connection each, all opened at once);
the fake upstream (raw asyncio, ``tests.bench.servers``) answers each with ``STREAM_CHUNKS`` (64)
``chat.completion.chunk`` events ``STREAM_GAP_S`` (20 ms) apart, then usage and ``[DONE]``. The
load client (``tests.bench.stream_client``, raw asyncio, in this process) records each stream's
time to first event and the gaps between its content events. After a 50-stream warm-up on each,
every load (100 streams, then the 1,000 the target is about) runs directly against the fake
upstream (the baseline), against the bare hypercorn-trio app of ``servers.py`` streaming the same
events at the same pace (the ceiling of our stack: no upstream, no work per event), and through
the gateway (``llm-proxy serve``, logging on). "Added" figures are minus direct, same run. The
gateway's RSS is sampled every 100 ms during its runs.
Run: `.venv/bin/python -m tests.bench.bench_streaming`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from tests.bench import bench_throughput
from tests.bench.bench_throughput import BODY, UPSTREAM_KEY, bench_server, gateway_process
from tests.bench.servers import STREAM_CHUNKS, STREAM_GAP_S
from tests.bench.stream_client import StreamResult, raise_nofile_limit, run_streams
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY

STREAMS = 1_000  # the load the target is about
LOADS = (100, STREAMS)  # and a lighter one, to show what the gateway sustains
WARM_UP_STREAMS = 50
SETTLE_S = 0.5  # pause after the warm-up and between the runs
ADDED_GAP_P99_TARGET_MS = 10.0
RSS_TARGET_MB = 150.0
CPU_PER_EVENT_TARGET_US = 60.0  # the loop's CPU per event passed through (issue 14)
# Events each stream forwards: its chunks, the usage chunk (asked for, below) and [DONE].
EVENTS_PER_STREAM = STREAM_CHUNKS + 2
STREAM_BODY = json.dumps(
    {
        "model": "gpt-4o",
        "messages": json.loads(BODY)["messages"],
        "stream": True,
        # The gateway always asks the upstream for usage but forwards it only when asked: ask,
        # so both runs carry the same events.
        "stream_options": {"include_usage": True},
    },
    separators=(",", ":"),
).encode()


class RssSampler:
    """Peak VmRSS of one process, read from ``/proc`` every 100 ms in a thread."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak_mb = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.pid))


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pid(url: str, pattern: str | None) -> int | None:
    """The pid behind ``url``: from bench_throughput's registry when it keeps one, else the
    one process whose command line contains ``pattern`` (a temporary path: unique)."""
    registry = getattr(bench_throughput, "PIDS", None)
    if isinstance(registry, dict) and isinstance(registry.get(url), int):
        return int(registry[url])
    if pattern is None:
        return None
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    pids = [int(p) for p in found.stdout.split()]
    return pids[0] if len(pids) == 1 else None


def _stream(url: str, key: str, streams: int) -> StreamResult:
    return run_streams(url, streams, STREAM_BODY, key, expected=STREAM_CHUNKS)


def _pct(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def measure() -> list[Figure]:
    """Run each load direct, against the bare stack and through the gateway; the figures."""
    raise_nofile_limit()  # before the servers start: they inherit it
    out: list[Figure] = []
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        upstream = stack.enter_context(bench_server("upstream"))
        bare = stack.enter_context(bench_server("bare"))
        gateway = stack.enter_context(gateway_process(upstream, directory))
        gateway_pid = _pid(gateway, str(directory / "bench.toml"))
        targets = {"direct": (upstream, UPSTREAM_KEY), "bare": (bare, UPSTREAM_KEY)}
        targets["gateway"] = (gateway, CLIENT_KEY)
        for url, key in targets.values():
            _stream(url, key, WARM_UP_STREAMS)
        for streams in LOADS:
            results: dict[str, StreamResult] = {}
            for name, (url, key) in targets.items():
                time.sleep(SETTLE_S)
                if name == "gateway" and gateway_pid:
                    idle_mb = rss_mb(gateway_pid)
                    before = cpu_s(gateway_pid)
                    with RssSampler(gateway_pid) as sampler:
                        results[name] = _stream(url, key, streams)
                    cpu = cpu_s(gateway_pid) - before
                    out += figures(streams, results, idle_mb, sampler.peak_mb, cpu)
                else:
                    results[name] = _stream(url, key, streams)
            if not gateway_pid:
                out += figures(streams, results, None, None, None)
    return out


def figures(
    streams: int,
    results: dict[str, StreamResult],
    idle_mb: float | None,
    peak_mb: float | None,
    gateway_cpu_s: float | None,
) -> list[Figure]:
    """The table's rows for one load."""
    section = (
        f"streaming: {streams:,} concurrent streams x {STREAM_CHUNKS} chunks, "
        f"{STREAM_GAP_S * 1000:.0f} ms apart"
    )
    through, direct, bare = results["gateway"], results["direct"], results["bare"]
    judged = streams == STREAMS
    out: list[Figure] = []
    for label, pct, attribute, target in (
        ("added time to first token p50", 50, "ttfts_ms", None),
        ("added time to first token p99", 99, "ttfts_ms", None),
        ("added inter-chunk gap p50", 50, "gaps_ms", None),
        ("added inter-chunk gap p99", 99, "gaps_ms", ADDED_GAP_P99_TARGET_MS),
    ):
        values = {name: _pct(getattr(r, attribute), pct) for name, r in results.items()}
        added = values["gateway"] - values["direct"]
        out.append(
            Figure(
                section,
                label,
                f"{added:+.1f} ms",
                f"{values['direct']:.1f} direct",
                f"bare stack {values['bare'] - values['direct']:+.1f}",
                f"<= {target:g} ms" if target is not None and judged else "",
                (added <= target and through.gaps_ms != [])
                if target is not None and judged
                else None,
            )
        )
    out.append(
        Figure(
            section,
            "errors (streams not complete)",
            str(through.errors),
            f"{direct.errors} direct",
            f"bare stack {bare.errors}",
            "0",
            through.errors == 0,
        )
    )
    for name, result in results.items():
        if result.errors:
            out.append(Figure(section, f"  {name} errors: {result.error_summary}", ""))
    out.append(
        Figure(
            section,
            "run time, first connect to last [DONE]",
            f"{through.elapsed_s:.2f} s",
            f"{direct.elapsed_s:.2f} s direct",
            f"bare stack {bare.elapsed_s:.2f} s",
            f"ideal {(STREAM_CHUNKS - 1) * STREAM_GAP_S:.2f} s",
        )
    )
    if gateway_cpu_s is not None:
        events = through.streams * EVENTS_PER_STREAM
        out.append(
            Figure(
                section,
                "gateway CPU per event passed through",
                f"{gateway_cpu_s / events * 1e6:.0f} us",
                f"{gateway_cpu_s:.2f} s in all",
                f"{events / max(through.elapsed_s, 1e-9):,.0f} events/s",
                f"<= {CPU_PER_EVENT_TARGET_US:g} us",
                gateway_cpu_s / events * 1e6 <= CPU_PER_EVENT_TARGET_US,
            )
        )
    if peak_mb is not None and idle_mb is not None:
        out.append(
            Figure(
                section,
                "gateway RSS peak during the run",
                f"{peak_mb:.0f} MB",
                f"{idle_mb:.0f} MB idle before",
                f"{peak_mb - idle_mb:+.0f} MB",
                f"<= {RSS_TARGET_MB:.0f} MB",
                peak_mb <= RSS_TARGET_MB,
            )
        )
    return out


def main() -> None:
    """Measure and print the table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
