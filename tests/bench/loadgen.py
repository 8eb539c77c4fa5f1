"""Load generation for the benchmarks: ``wrk`` (Debian package) when installed, else a Python
fallback that is much slower and says so."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True, slots=True)
class LoadResult:
    """One measured point."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors, timeouts and non-2xx answers


def _lua(method: str, body: bytes | None, headers: dict[str, str]) -> str:
    lines = [f"wrk.method = {json.dumps(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {json.dumps(body.decode())}")
    for name, value in headers.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_wrk(output: str) -> LoadResult:
    """Read ``wrk --latency`` output."""
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    requests = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if requests is None or rps is None or set(percentiles) != {"50", "99"}:
        raise ValueError(f"cannot parse wrk output:\n{output}")
    errors = 0
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket is not None:
        errors += sum(int(g) for g in socket.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors += int(non_2xx[1])
    return LoadResult(
        requests=int(requests[1]),
        rps=float(rps[1]),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        errors=errors,
    )


class LoadGenerator:
    """Runs fixed-concurrency closed-loop load against one URL."""

    def __init__(self) -> None:
        self.wrk = shutil.which("wrk")
        self._scripts = tempfile.TemporaryDirectory(prefix="bench-wrk-")

    @property
    def name(self) -> str:
        """What generates the load, for the table's header."""
        if self.wrk:
            return "wrk (1 thread)"
        return "Python fallback (wrk not installed: figures capped by the client)"

    def close(self) -> None:
        """Remove the Lua scripts."""
        self._scripts.cleanup()

    def run(
        self,
        url: str,
        *,
        connections: int,
        seconds: float,
        method: str = "POST",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> LoadResult:
        """Hold ``connections`` keep-alive connections busy for ``seconds``."""
        headers = headers or {}
        if self.wrk is None:
            return _python_load(url, connections, seconds, method, body, headers)
        script = (
            Path(self._scripts.name) / f"{abs(hash((method, body, tuple(headers.items()))))}.lua"
        )
        script.write_text(_lua(method, body, headers))
        command = [
            self.wrk,
            "--latency",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return parse_wrk(done.stdout)


def _python_load(
    url: str,
    connections: int,
    seconds: float,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
) -> LoadResult:
    """A slow stand-in for wrk: one thread per connection, ``http.client`` keep-alive."""
    import http.client

    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                conn.request(method, parts.path or "/", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                if response.status >= 300:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
                continue
            mine.append((time.perf_counter() - start) * 1000)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if len(latencies) < 2:
        return LoadResult(len(latencies), 0.0, float("nan"), float("nan"), errors[0])
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(len(latencies), len(latencies) / elapsed, cuts[49], cuts[98], errors[0])
