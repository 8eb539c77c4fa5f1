"""Added latency and throughput of the gateway, against its baselines measured in the same run.

Three servers, each in its own process: the fake upstream (raw asyncio), a bare hypercorn-trio
ASGI app answering the same fixed JSON (the ceiling of our stack on this machine), and the gateway
(``llm-proxy serve``, logging on) pointed at the fake upstream. ``wrk`` drives non-streaming
``POST /v1/chat/completions`` at concurrency 1, 32 and 256.
Run: `make bench` (or `.venv/bin/python -m tests.bench.bench_throughput`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.conftest import CLIENT_KEY

SECONDS = 5.0  # per measured point
WARM_UP = 1.0  # before each point, same concurrency, not counted
CONCURRENCIES = (1, 32, 256)
UPSTREAM_KEY = "sk-bench-upstream-key"
BODY = json.dumps(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello."}]},
    separators=(",", ":"),
).encode()
PATH = "/v1/chat/completions"
START_TIMEOUT = 30.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def bench_server(kind: str) -> Iterator[str]:
    """Run ``tests.bench.servers KIND`` in a child process; yield its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.servers", kind], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start (said {line!r})")
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()


def write_gateway_config(
    upstream: str, directory: Path, *, record_requests: bool = True, name: str = "bench"
) -> Path:
    """The gateway's bench config: openai at ``upstream`` (room for 1,024 calls at once), a
    static key, no rate limits; ``record_requests`` is the request log's switch."""
    config = directory / f"{name}.toml"
    config.write_text(
        "[server]\n"
        'host = "127.0.0.1"\n'
        "[auth]\n"
        f'tokens = ["{CLIENT_KEY}"]\n'
        "[limits]\n"
        "default_client_requests_per_minute = 0\n"
        "[logging]\n"
        f"record_requests = {'true' if record_requests else 'false'}\n"
        "[providers.openai]\n"
        f'base_url = "{upstream}/v1"\n'
        f'api_key = "{UPSTREAM_KEY}"\n'
        "max_concurrency = 1024\n"
        "[providers.ollama]\n"
        "enabled = false\n"
    )
    return config


@contextmanager
def gateway_process(
    upstream: str, directory: Path, *, record_requests: bool = True
) -> Iterator[str]:
    """Run ``llm-proxy serve`` on port 0 against ``upstream``; yield its base URL."""
    name = "bench" if record_requests else "bench-unlogged"
    config = write_gateway_config(upstream, directory, record_requests=record_requests, name=name)
    log_path = directory / f"{name}.log"
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
        str(directory / f"{name}.db"),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for line in log_path.read_text(errors="replace").splitlines():
                if "listening on http://" in line:
                    url = line.split("listening on ", 1)[1].split()[0]
                    yield url
                    return
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gateway did not start:\n{tail}")
            time.sleep(0.02)
    finally:
        _stop(process)


def check(url: str, key: str) -> None:
    """One request first: the load below must measure answers, not errors."""
    request = urllib.request.Request(
        url + PATH,
        data=BODY,
        headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    if answer.get("object") != "chat.completion":
        raise RuntimeError(f"{url}: unexpected answer {answer!r}")


def measure(load: LoadGenerator, url: str, key: str, connections: int) -> LoadResult:
    """A warm-up, then one measured point."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    for seconds in (WARM_UP, SECONDS):
        result = load.run(
            url + PATH, connections=connections, seconds=seconds, body=BODY, headers=headers
        )
    return result


def main() -> None:
    """Start the three servers, measure every point, print one table."""
    load = LoadGenerator()
    results: dict[tuple[str, int], LoadResult] = {}
    started = time.monotonic()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-") as directory:
        stack.callback(load.close)
        upstream = stack.enter_context(bench_server("upstream"))
        bare = stack.enter_context(bench_server("bare"))
        gateway = stack.enter_context(gateway_process(upstream, Path(directory)))
        targets = (
            ("fake upstream direct", upstream, UPSTREAM_KEY),
            ("bare hypercorn-trio", bare, UPSTREAM_KEY),
            ("gateway", gateway, CLIENT_KEY),
        )
        for _, url, key in targets:
            check(url, key)
        for connections in CONCURRENCIES:
            for name, url, key in targets:
                results[name, connections] = measure(load, url, key, connections)
    elapsed = time.monotonic() - started

    cores = os.cpu_count() or 0
    print(
        f"throughput: non-streaming POST {PATH}, gateway logging on; load: {load.name}, "
        f"{SECONDS:g} s per point after a {WARM_UP:g} s warm-up; whole bench {elapsed:.0f} s"
    )
    print(
        f"machine: {cores} cores shared by the load generator, the fake upstream, the bare app "
        "and the gateway (one process each): read ratios, not absolute figures"
    )
    print(f"{'target':<22}{'conc':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for connections in CONCURRENCIES:
        for name, _, _ in targets:
            r = results[name, connections]
            print(
                f"{name:<22}{connections:>6}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
                f"{r.errors:>8}"
            )
    direct, through = results["fake upstream direct", 1], results["gateway", 1]
    added_p50 = through.p50_ms - direct.p50_ms
    added_p99 = through.p99_ms - direct.p99_ms
    verdict = "meets" if added_p50 <= 2.0 else "MISSES"
    print(
        f"added latency at concurrency 1 (gateway - direct): p50 {added_p50:.2f} ms, "
        f"p99 {added_p99:.2f} ms; {verdict} the 2.0 ms p50 target"
    )
    shares = []
    for connections in CONCURRENCIES[1:]:
        ceiling = results["bare hypercorn-trio", connections].rps
        share = results["gateway", connections].rps / max(ceiling, 1e-9)
        shares.append(f"{share:.0%} at {connections}")
    c32 = results["gateway", 32].rps / max(results["bare hypercorn-trio", 32].rps, 1e-9)
    verdict = "meets" if c32 >= 0.6 else "MISSES"
    print(
        f"gateway req/s / bare-stack ceiling: {', '.join(shares)}; {verdict} the 60% target at 32"
    )
    headroom = results["fake upstream direct", 32].rps / max(results["gateway", 32].rps, 1e-9)
    verdict = "ok" if headroom >= 10 else "TOO SLOW: the upstream may be a bottleneck"
    print(f"fake upstream req/s / gateway req/s at 32: {headroom:.1f}x ({verdict}; needs >= 10x)")


if __name__ == "__main__":
    main()
