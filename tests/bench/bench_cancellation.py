"""How fast a client's hang-up reaches the upstream: through the gateway versus direct.

The issue's target: the gateway closes the upstream connection within 100 ms of the client going
away. Baseline: the same hang-up made directly against the fake upstream, in the same run.
Run: `make bench` (or `.venv/bin/python -m tests.bench.bench_cancellation`).
"""

from __future__ import annotations

import statistics
import tempfile
from functools import partial
from pathlib import Path

import httpx
import trio

from proxy import service
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY, make_config
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, StallMidStream

ROUNDS = 200
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def hang_up_latencies(fake: FakeOpenAI, base_url: str, key: str, path: str) -> list[float]:
    """Seconds from each client hang-up to the fake upstream noticing it."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url) as client:
        for _ in range(ROUNDS):
            fake.enqueue(StallMidStream(after_chunks=1, seconds=30))
            seen = len(fake.disconnected_at)
            headers = {"authorization": f"Bearer {key}"}
            async with client.stream("POST", path, json=BODY, headers=headers) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        break
                hung_up = trio.current_time()
            with trio.fail_after(5):
                while len(fake.disconnected_at) == seen:
                    await trio.sleep(0)
            latencies.append(fake.disconnected_at[-1] - hung_up)
    return latencies


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def _measure() -> tuple[list[float], list[float]]:
    """(direct, through the gateway) hang-up latencies in seconds."""
    with tempfile.TemporaryDirectory() as directory:
        async with trio.open_nursery() as nursery:
            fake = FakeOpenAI()
            await nursery.start(fake.run)
            config = make_config(
                Path(directory),
                {
                    "providers": {
                        "openai": {"base_url": fake.base_url, "api_key": DEFAULT_API_KEY},
                        "ollama": {"enabled": False},
                    },
                    "limits": {"default_client_requests_per_minute": 0},
                },
            )
            gateway = await nursery.start(partial(service.run, config, handle_signals=False))
            origin = fake.base_url.removesuffix("/v1")
            direct = await hang_up_latencies(fake, origin, DEFAULT_API_KEY, "/v1/chat/completions")
            through = await hang_up_latencies(
                fake, gateway.base_url, CLIENT_KEY, "/v1/chat/completions"
            )
            gateway.stop()
            await gateway.stopped.wait()
            nursery.cancel_scope.cancel()  # the fake upstream serves until cancelled
    return direct, through


def measure() -> list[Figure]:
    """Both paths, as the table's rows."""
    direct, through = trio.run(_measure)
    section = f"cancellation: client hang-up to upstream close ({ROUNDS} streams each way)"
    figures = []
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        gateway_ms, direct_ms = quantile(through, q) * 1000, quantile(direct, q) * 1000
        figures.append(
            Figure(
                section,
                f"hang-up to upstream close {label}",
                f"{gateway_ms:.2f} ms",
                f"{direct_ms:.2f} ms direct",
                f"{gateway_ms - direct_ms:+.2f} ms",
                "<= 100 ms" if label == "p99" else "",
                gateway_ms <= 100 if label == "p99" else None,
            )
        )
    return figures


def main() -> None:
    """Measure and print this bench's part of the table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
