"""``make bench``: every benchmark, one table, each figure beside its baseline from the same run.

Run: `make bench` (or `.venv/bin/python -m tests.bench`); `-m tests.bench.bench_<name>` runs one.
"""

from __future__ import annotations

import time

from tests.bench import (
    bench_analytics,
    bench_cancellation,
    bench_embeddings,
    bench_fleet_limiter,
    bench_resources,
    bench_responses,
    bench_storage_writer,
    bench_streaming,
    bench_throughput,
    bench_workers,
)
from tests.bench.loadgen import LoadGenerator
from tests.bench.table import Figure, machine, render


def main() -> None:
    """Run the benches in turn (each starts and stops its own servers), print the table."""
    began = time.monotonic()
    load = LoadGenerator()
    figures: list[Figure] = []
    try:
        figures += bench_throughput.measure(load)
        figures += bench_responses.measure(load)  # beside chat, in this same run
        figures += bench_embeddings.measure(load)
        figures += bench_workers.measure(load)  # workers = 2 against 1, in this same run
        figures += bench_fleet_limiter.measure(load)
    finally:
        load.close()
    figures += bench_streaming.measure()
    figures += bench_cancellation.measure()
    figures += bench_resources.measure()
    figures += bench_storage_writer.measure()  # PostgreSQL beside SQLite, in this same run
    figures += bench_analytics.measure()  # SQLite, then PostgreSQL beside it
    missed = [figure for figure in figures if figure.met is False]
    print(f"llm-proxy benchmarks on {machine()}; load: {load.name}")
    print("everything shares the machine's cores: read the ratios to the baselines, not the")
    print("absolute figures, which move with the machine and with what else runs on it")
    print(render(figures))
    print(
        f"{len(figures)} figures, {len(missed)} missed target(s); "
        f"whole run {time.monotonic() - began:.0f} s"
    )


if __name__ == "__main__":
    main()
