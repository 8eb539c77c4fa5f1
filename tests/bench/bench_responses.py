"""The Responses API beside chat, through one gateway in the same run.

One gateway process (``llm-proxy serve``, logging on) with ``providers.openai`` and
``providers.deepseek``, both at the bench upstream (``tests.bench.servers``). OpenAI serves
``/v1/responses``, so a Responses call to ``gpt-4o`` is passed through (the client's bytes up,
the upstream's bytes or events back); DeepSeek serves chat only, so a Responses call to
``deepseek-chat`` is translated (the body becomes a chat request, the chat answer or chunks
become a response object or its event sequence). Chat passed through to openai is the baseline.
Every call leaves ``store`` at its default (true), as ``client.responses.create`` does: the
gateway stores each response, passed through or translated.

- Non-streamed: req/s and p50 at 32 connections (``bench_throughput``'s load generator), the
  three in interleaved rounds, the median of 3 kept; beside them the two Responses calls with
  ``store: false`` (as Codex sends them), which shows what storing costs apart from the rest.
- Streamed: 100 concurrent streams (``tests.bench.stream_client``) of ``STREAM_CHUNKS`` (64)
  pieces ``STREAM_GAP_S`` (20 ms) apart: the gateway's CPU per event forwarded (every event each
  stream carries: chat's usage chunk and ``[DONE]``, the Responses opening and closing events)
  and the added inter-chunk gap p99, minus the direct figure of the stream the gateway reads
  (chat's for chat and the translated calls, the Responses one for passthrough). Interleaved
  rounds, the median of 3 kept.

No targets but errors = 0 (issue 15 sets none): each Responses figure is printed beside chat's.
Run: `.venv/bin/python -m tests.bench.bench_responses`.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from tests.bench.bench_streaming import STREAM_BODY, cpu_s
from tests.bench.bench_throughput import (
    BODY,
    PIDS,
    UPSTREAM_KEY,
    bench_server,
    gateway_process,
    interleaved_medians,
)
from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.bench.servers import STREAM_CHUNKS, STREAM_GAP_S
from tests.bench.stream_client import (
    CHAT_PATH,
    RESPONSES_PATH,
    StreamResult,
    raise_nofile_limit,
    run_streams,
)
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY

CONNECTIONS: Final = 32
SECONDS: Final = 4.0  # per measured point
WARM_UP_S: Final = 1.0  # before each point, same load, not counted
ROUNDS: Final = 3  # interleaved, the median kept
STREAMS: Final = 100
WARM_UP_STREAMS: Final = 50
SETTLE_S: Final = 0.5  # pause before each streamed run
DEEPSEEK: Final = "deepseek-chat"
_GAP_PCT: Final = 99


def _responses_body(model: str, *, stream: bool, store: bool = True) -> bytes:
    fields: dict[str, object] = {"model": model, "input": "Say hello."}
    if stream:
        fields["stream"] = True
    if not store:
        fields["store"] = False
    return json.dumps(fields, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One kind of call: where it goes, what it sends, what a stream of it carries."""

    label: str
    path: str
    body: bytes
    stream_body: bytes
    deltas: int  # content events a stream of it must carry through the gateway
    direct: str  # the key of the direct stream it is compared with


CHAT: Final = Target("chat", CHAT_PATH, BODY, STREAM_BODY, STREAM_CHUNKS, "chat")
PASSED: Final = Target(
    "Responses passthrough",
    RESPONSES_PATH,
    _responses_body("gpt-4o", stream=False),
    _responses_body("gpt-4o", stream=True),
    STREAM_CHUNKS,
    "responses",
)
# The chat stream's first chunk (the role) and last (finish_reason) carry no text: no delta.
TRANSLATED: Final = Target(
    "Responses translated",
    RESPONSES_PATH,
    _responses_body(DEEPSEEK, stream=False),
    _responses_body(DEEPSEEK, stream=True),
    STREAM_CHUNKS - 2,
    "chat",
)
TARGETS: Final = (CHAT, PASSED, TRANSLATED)
# The same calls with ``store: false`` (as Codex sends them), non-streamed only: what storing the
# response costs, apart from what passing through or translating does.
PASSED_UNSTORED: Final = dataclasses.replace(
    PASSED,
    label="Responses passthrough, store off",
    body=_responses_body("gpt-4o", stream=False, store=False),
)
TRANSLATED_UNSTORED: Final = dataclasses.replace(
    TRANSLATED,
    label="Responses translated, store off",
    body=_responses_body(DEEPSEEK, stream=False, store=False),
)
LOAD_TARGETS: Final = (*TARGETS, PASSED_UNSTORED, TRANSLATED_UNSTORED)


def gateway_extra(upstream: str) -> str:
    """DeepSeek at the bench upstream too, beside bench_throughput's openai."""
    return (
        "[providers.deepseek]\n"
        f'base_url = "{upstream}/v1"\n'
        f'api_key = "{UPSTREAM_KEY}"\n'
        "max_concurrency = 1024\n"
    )


def check(gateway: str, target: Target) -> None:
    """One call first: the load below must measure answers, not errors."""
    request = urllib.request.Request(
        gateway + target.path,
        data=target.body,
        headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    expected = "chat.completion" if target.path == CHAT_PATH else "response"
    if answer.get("object") != expected or answer.get("status", "completed") != "completed":
        raise RuntimeError(f"{target.label}: unexpected answer {answer!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class StreamRound:
    """One streamed run through the gateway: what the client saw, the gateway's CPU."""

    result: StreamResult
    gateway_cpu_s: float

    @property
    def cpu_per_event_us(self) -> float:
        """The gateway's CPU over the run per event the streams carried."""
        return self.gateway_cpu_s / max(self.result.events, 1) * 1e6


def _gap_p99(result: StreamResult) -> float:
    gaps = result.gaps_ms
    if len(gaps) < 2:
        return float("nan")
    return statistics.quantiles(gaps, n=100, method="inclusive")[_GAP_PCT - 1]


def measure(load: LoadGenerator | None = None) -> list[Figure]:
    """Start the upstream and the gateway, measure both parts, return the figures."""
    own = load is None
    load = load or LoadGenerator()
    raise_nofile_limit()  # before the servers start: they inherit it
    try:
        with ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            upstream = stack.enter_context(bench_server("upstream"))
            gateway = stack.enter_context(
                gateway_process(upstream, directory, extra=gateway_extra(upstream))
            )
            for target in LOAD_TARGETS:
                check(gateway, target)
            loads = _measure_load(load, gateway)
            streams, direct = _measure_streams(upstream, gateway, PIDS.get(gateway))
    finally:
        if own:
            load.close()
    return load_figures(loads, load.name) + stream_figures(streams, direct)


def _measure_load(load: LoadGenerator, gateway: str) -> dict[Target, LoadResult]:
    return interleaved_medians(
        load,
        gateway,
        LOAD_TARGETS,
        connections=CONNECTIONS,
        seconds=SECONDS,
        warm_up_s=WARM_UP_S,
        rounds=ROUNDS,
    )


def _measure_streams(
    upstream: str, gateway: str, gateway_pid: int | None
) -> tuple[dict[Target, list[StreamRound]], dict[str, list[StreamResult]]]:
    def through(target: Target, streams: int) -> StreamResult:
        return run_streams(
            gateway,
            streams,
            target.stream_body,
            CLIENT_KEY,
            expected=target.deltas,
            path=target.path,
        )

    directs: dict[str, Callable[[int], StreamResult]] = {
        "chat": lambda streams: run_streams(
            upstream, streams, CHAT.stream_body, UPSTREAM_KEY, expected=STREAM_CHUNKS
        ),
        "responses": lambda streams: run_streams(
            upstream,
            streams,
            PASSED.stream_body,
            UPSTREAM_KEY,
            expected=STREAM_CHUNKS,
            path=RESPONSES_PATH,
        ),
    }
    for run in directs.values():
        run(WARM_UP_STREAMS)
    for target in TARGETS:
        through(target, WARM_UP_STREAMS)
    rounds: dict[Target, list[StreamRound]] = {target: [] for target in TARGETS}
    direct: dict[str, list[StreamResult]] = {name: [] for name in directs}
    for _ in range(ROUNDS):
        for name, run in directs.items():
            time.sleep(SETTLE_S)
            direct[name].append(run(STREAMS))
        for target in TARGETS:
            time.sleep(SETTLE_S)
            before = cpu_s(gateway_pid) if gateway_pid else 0.0
            result = through(target, STREAMS)
            used = cpu_s(gateway_pid) - before if gateway_pid else float("nan")
            rounds[target].append(StreamRound(result, used))
    return rounds, direct


def load_figures(results: dict[Target, LoadResult], loader: str) -> list[Figure]:
    """The non-streamed rows: each Responses figure beside chat's."""
    section = (
        f"Responses API, non-streamed, {CONNECTIONS} connections ({loader}, {SECONDS:g} s per "
        f"point, median of {ROUNDS} interleaved rounds)"
    )
    chat = results[CHAT]
    out = [
        Figure(section, f"req/s, {CHAT.label} (the baseline)", f"{chat.rps:.0f}"),
        Figure(section, f"p50, {CHAT.label}", f"{chat.p50_ms:.1f} ms"),
    ]
    for target in LOAD_TARGETS[1:]:
        result = results[target]
        out.append(
            Figure(
                section,
                f"req/s, {target.label}",
                f"{result.rps:.0f}",
                f"{chat.rps:.0f} chat",
                f"{result.rps / max(chat.rps, 1e-9):.0%} of chat",
            )
        )
        out.append(
            Figure(
                section,
                f"p50, {target.label}",
                f"{result.p50_ms:.1f} ms",
                f"{chat.p50_ms:.1f} ms chat",
                f"{result.p50_ms - chat.p50_ms:+.1f} ms",
            )
        )
    errors = sum(result.errors for result in results.values())
    out.append(Figure(section, "errors under load", str(errors), "", "", "0", errors == 0))
    return out


def stream_figures(
    rounds: dict[Target, list[StreamRound]], direct: dict[str, list[StreamResult]]
) -> list[Figure]:
    """The streamed rows: CPU per event and added gap p99, each Responses one beside chat's."""
    section = (
        f"Responses API, streamed: {STREAMS} concurrent streams x {STREAM_CHUNKS} pieces, "
        f"{STREAM_GAP_S * 1000:.0f} ms apart (median of {ROUNDS} interleaved rounds)"
    )
    cpu = {t: statistics.median(r.cpu_per_event_us for r in rounds[t]) for t in TARGETS}
    direct_gap = {name: statistics.median(map(_gap_p99, runs)) for name, runs in direct.items()}
    added = {
        t: statistics.median(_gap_p99(r.result) for r in rounds[t]) - direct_gap[t.direct]
        for t in TARGETS
    }
    out: list[Figure] = []
    for target in TARGETS:
        events = statistics.median(r.result.events for r in rounds[target]) / STREAMS
        out.append(
            Figure(
                section,
                f"CPU per event, {target.label}",
                f"{cpu[target]:.0f} us",
                f"{cpu[CHAT]:.0f} us chat" if target is not CHAT else "",
                (f"{cpu[target] / cpu[CHAT]:.2f}x chat, " if target is not CHAT else "")
                + f"{events:.0f} ev/stream",
            )
        )
    for target in TARGETS:
        out.append(
            Figure(
                section,
                f"added gap p99, {target.label}",
                f"{added[target]:+.1f} ms",
                f"{direct_gap[target.direct]:.1f} direct ({target.direct})",
                f"chat {added[CHAT]:+.1f} ms" if target is not CHAT else "",
            )
        )
    results = [r.result for runs in rounds.values() for r in runs]
    errors = sum(result.errors for result in results)
    direct_errors = sum(result.errors for runs in direct.values() for result in runs)
    out.append(
        Figure(
            section,
            "errors (streams not complete)",
            str(errors),
            f"{direct_errors} direct",
            "",
            "0",
            errors == 0,
        )
    )
    for target in TARGETS:
        for r in rounds[target]:
            if r.result.errors:
                out.append(Figure(section, f"  {target.label}: {r.result.error_summary}", ""))
    return out


def main() -> None:
    """Measure and print this bench's part of the table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
