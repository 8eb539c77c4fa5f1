"""The bench upstream's Responses API is what the official SDK accepts, and the bench's stream
client reads it: the benchmark's Responses points measure answers, not errors.

The benchmark itself runs with ``make bench``; these checks keep its Responses part honest.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.responses import Response

from tests.bench import bench_responses, responses_wire
from tests.bench.bench_throughput import UPSTREAM_KEY, bench_server, gateway_process
from tests.bench.loadgen import LoadResult
from tests.bench.servers import STREAM_CHUNKS
from tests.bench.stream_client import StreamResult, run_streams
from tests.bench.table import render
from tests.conftest import CLIENT_KEY
from tests.responses_sdk import accumulate, decoded


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """The bench upstream, in its own process, as ``make bench`` runs it."""
    with bench_server("upstream") as url:
        yield url


@pytest.fixture
def sdk(upstream: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream + "/v1", api_key=UPSTREAM_KEY, max_retries=0) as client:
        yield client


def test_sdk_creates_a_response_from_the_bench_upstream(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model="gpt-4o", input="Say hello.")
    assert response.status == "completed"
    assert response.output_text == "Hello! How can I help you today?"
    assert response.usage is not None
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.total_tokens == response.usage.input_tokens + 9
    # Each answer is its own response, as a gateway storing them by id needs.
    assert sdk.responses.create(model="gpt-4o", input="Again.").id != response.id


def test_sdk_streams_a_response_from_the_bench_upstream(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="gpt-4o", input="Say hello.") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[4 : 4 + STREAM_CHUNKS] == ["response.output_text.delta"] * STREAM_CHUNKS
    assert kinds[4 + STREAM_CHUNKS :] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.status == "completed"
    assert final.output_text == "".join(f" tok{i}" for i in range(STREAM_CHUNKS))
    assert final.usage is not None
    assert final.usage.output_tokens == STREAM_CHUNKS


def test_stream_client_reads_responses_streams(upstream: str) -> None:
    body = b'{"model":"gpt-4o","input":"Say hello.","stream":true}'
    result = run_streams(
        upstream, 3, body, UPSTREAM_KEY, expected=STREAM_CHUNKS, path="/v1/responses"
    )
    assert (result.completed, result.errors) == (3, 0), result.error_summary
    assert len(result.gaps_ms) == 3 * (STREAM_CHUNKS - 1)
    assert result.events == 3 * (STREAM_CHUNKS + 8)


def test_bench_upstream_bytes_match_the_sdk_types_strictly() -> None:
    """Validated, not just constructed: every field the SDK types require is there."""
    placeholder, response_id = responses_wire.PLACEHOLDER, responses_wire.next_id()
    response = Response.model_validate_json(responses_wire.RESPONSE.replace(placeholder, b"x"))
    assert response.output_text == responses_wire.TEXT
    opening, deltas, closing = responses_wire.stream_events(3)
    events = [event.replace(placeholder, response_id) for event in (*opening, *deltas, *closing)]
    data = decoded(events)  # framing, shapes, sequence numbers 0, 1, 2, ...
    state = accumulate(data)  # the SDK's own stream state takes every event, in order
    assert state._completed_response is not None  # get_final_response reads it
    assert state._completed_response.output_text == " tok0 tok1 tok2"
    assert data[-1]["response"]["id"] == response_id.decode()


class _CutStreamHandler(socketserver.StreamRequestHandler):
    """Answers one Responses stream that stops before ``response.completed``."""

    def handle(self) -> None:
        self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        opening, deltas, _ = responses_wire.stream_events(STREAM_CHUNKS)
        body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in (*opening, *deltas))
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        self.wfile.write(head + b"transfer-encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")


def test_stream_client_counts_a_responses_stream_without_its_end_as_an_error() -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CutStreamHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            result = run_streams(url, 2, b"{}", "key", expected=STREAM_CHUNKS, path="/v1/responses")
        finally:
            server.shutdown()
    assert (result.completed, result.errors) == (0, 2)
    assert result.error_kinds == {"no response.completed": 2}


def test_bench_gateway_answers_every_responses_point(upstream: str, tmp_path: Path) -> None:
    """The bench's gateway setup: each point's call answers, each stream completes whole."""
    with gateway_process(upstream, tmp_path, extra=bench_responses.gateway_extra(upstream)) as url:
        for target in bench_responses.LOAD_TARGETS:
            bench_responses.check(url, target)
        for target in bench_responses.TARGETS:
            result = run_streams(
                url,
                2,
                target.stream_body,
                CLIENT_KEY,
                expected=target.deltas,
                path=target.path,
            )
            assert (result.completed, result.errors) == (2, 0), result.error_summary
            assert len(result.gaps_ms) == 2 * (target.deltas - 1)


def test_bench_responses_figures_render_with_their_verdicts() -> None:
    load = LoadResult(requests=10, rps=100.0, p50_ms=2.0, p99_ms=5.0, errors=0)
    loads = dict.fromkeys(bench_responses.LOAD_TARGETS, load)
    stream = StreamResult(3, 3, [1.0], [20.0, 21.0], 0, {}, 1.3, 0.1, 210)
    rounds = {t: [bench_responses.StreamRound(stream, 0.021)] for t in bench_responses.TARGETS}
    rows = bench_responses.load_figures(loads, "wrk") + bench_responses.stream_figures(
        rounds, {"chat": [stream], "responses": [stream]}
    )
    by_metric = {row.metric: row for row in rows}
    assert by_metric["req/s, Responses translated"].compare == "100% of chat"
    assert by_metric["CPU per event, Responses passthrough"].gateway == "100 us"
    assert [row.met for row in rows if row.target] == [True, True]  # errors = 0, twice
    assert "MISSED" not in render(rows)
