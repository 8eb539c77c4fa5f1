"""The bench upstream's embeddings are what the official SDK accepts, and every embeddings target
of the bench answers through a gateway: the benchmark's embeddings point measures answers, not
errors. The benchmark itself runs with ``make bench``."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.bench import bench_embeddings
from tests.bench.bench_throughput import UPSTREAM_KEY, bench_server, gateway_process
from tests.bench.loadgen import LoadResult
from tests.bench.servers import EMBEDDING_BATCH, EMBEDDING_DIMENSIONS
from tests.bench.table import render


def test_the_sdk_reads_the_bench_upstreams_embeddings() -> None:
    with (
        bench_server("upstream") as upstream,
        openai.OpenAI(base_url=upstream + "/v1", api_key=UPSTREAM_KEY, max_retries=0) as client,
    ):
        one = client.embeddings.create(
            model="text-embedding-3-small", input="hi", encoding_format="float"
        )
        batch = client.embeddings.create(
            model="text-embedding-3-small", input=["hi"] * EMBEDDING_BATCH, encoding_format="float"
        )
    assert [len(d.embedding) for d in one.data] == [EMBEDDING_DIMENSIONS]
    assert [d.index for d in batch.data] == list(range(EMBEDDING_BATCH))


def test_every_target_answers_through_a_gateway(tmp_path: Path) -> None:
    extra = "[providers.mock]\nenabled = true\n"
    with (
        bench_server("upstream") as upstream,
        gateway_process(upstream, tmp_path, extra=extra) as gateway,
    ):
        for target in bench_embeddings.TARGETS:
            bench_embeddings.check(gateway, target)  # raises on anything but the answer


def test_the_figures_name_each_target_beside_chat() -> None:
    load = LoadResult(requests=10, rps=100.0, p50_ms=2.0, p99_ms=5.0, errors=0)
    figures = bench_embeddings.figures(dict.fromkeys(bench_embeddings.TARGETS, load), "wrk")
    table = render(figures)
    for target in bench_embeddings.TARGETS[1:]:
        assert f"req/s, {target.label}" in table
    assert "100% of chat" in table
