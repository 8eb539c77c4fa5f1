"""Embeddings beside chat, through one gateway in the same run.

One gateway process (``llm-proxy serve``, logging on) with ``providers.openai`` at the bench
upstream (``tests.bench.servers``), which serves ``/v1/embeddings``: 1,536 floats per input. An
embeddings call to ``text-embedding-3-small`` is passed through (the client's bytes up, the
upstream's back, read only for the usage); the in-process ``mock`` provider makes its vectors
itself (encoded in OpenAI's shape by the gateway). Chat passed through to openai is the baseline.

Non-streamed req/s and p50 at 32 connections (``bench_throughput``'s load generator), in
interleaved rounds, the median of 3 kept: one input, a batch of 16, one input as base64, and one
input embedded by the mock.

No targets but errors = 0 (issue 17 sets none): each figure is printed beside chat's.
Run: `.venv/bin/python -m tests.bench.bench_embeddings`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from tests.bench.bench_throughput import BODY, bench_server, gateway_process, interleaved_medians
from tests.bench.loadgen import LoadGenerator, LoadResult
from tests.bench.servers import EMBEDDING_BATCH
from tests.bench.stream_client import CHAT_PATH
from tests.bench.table import Figure, render
from tests.conftest import CLIENT_KEY

CONNECTIONS: Final = 32
SECONDS: Final = 4.0  # per measured point
WARM_UP_S: Final = 1.0  # before each point, same load, not counted
ROUNDS: Final = 3  # interleaved, the median kept
EMBEDDINGS_PATH: Final = "/v1/embeddings"
TEXT: Final = "The quick brown fox jumps over the lazy dog."


def _body(**fields: object) -> bytes:
    return json.dumps({"model": "text-embedding-3-small", **fields}, separators=(",", ":")).encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """One kind of call: its label, path and body, and how many vectors its answer holds."""

    label: str
    path: str
    body: bytes
    vectors: int


CHAT: Final = Target("chat", CHAT_PATH, BODY, 0)
TARGETS: Final = (
    CHAT,
    Target("embeddings passthrough, 1 input", EMBEDDINGS_PATH, _body(input=TEXT), 1),
    Target(
        f"embeddings passthrough, {EMBEDDING_BATCH} inputs",
        EMBEDDINGS_PATH,
        _body(input=[TEXT] * EMBEDDING_BATCH),
        EMBEDDING_BATCH,
    ),
    Target(
        "embeddings passthrough, base64",
        EMBEDDINGS_PATH,
        _body(input=TEXT, encoding_format="base64"),
        1,
    ),
    Target("embeddings by the mock, 1 input", EMBEDDINGS_PATH, _body(model="mock", input=TEXT), 1),
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
    if target.path == CHAT_PATH:
        ok = answer.get("object") == "chat.completion"
    else:
        ok = answer.get("object") == "list" and len(answer.get("data", [])) == target.vectors
    if not ok:
        raise RuntimeError(f"{target.label}: unexpected answer {str(answer)[:200]}")


def measure(load: LoadGenerator | None = None) -> list[Figure]:
    """Start the upstream and the gateway, measure every target, return the figures."""
    own = load is None
    load = load or LoadGenerator()
    try:
        with ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            upstream = stack.enter_context(bench_server("upstream"))
            gateway = stack.enter_context(
                gateway_process(upstream, directory, extra="[providers.mock]\nenabled = true\n")
            )
            for target in TARGETS:
                check(gateway, target)
            results = _measure(load, gateway)
    finally:
        if own:
            load.close()
    return figures(results, load.name)


def _measure(load: LoadGenerator, gateway: str) -> dict[Target, LoadResult]:
    return interleaved_medians(
        load,
        gateway,
        TARGETS,
        connections=CONNECTIONS,
        seconds=SECONDS,
        warm_up_s=WARM_UP_S,
        rounds=ROUNDS,
    )


def figures(results: dict[Target, LoadResult], loader: str) -> list[Figure]:
    """Each embeddings figure beside chat's."""
    section = (
        f"Embeddings, {CONNECTIONS} connections ({loader}, {SECONDS:g} s per point, median of "
        f"{ROUNDS} interleaved rounds)"
    )
    chat = results[CHAT]
    out = [
        Figure(section, "req/s, chat (the baseline)", f"{chat.rps:.0f}"),
        Figure(section, "p50, chat", f"{chat.p50_ms:.1f} ms"),
    ]
    for target in TARGETS[1:]:
        result = results[target]
        out += [
            Figure(
                section,
                f"req/s, {target.label}",
                f"{result.rps:.0f}",
                f"{chat.rps:.0f} chat",
                f"{result.rps / max(chat.rps, 1e-9):.0%} of chat",
            ),
            Figure(
                section,
                f"p50, {target.label}",
                f"{result.p50_ms:.1f} ms",
                f"{chat.p50_ms:.1f} ms chat",
                f"{result.p50_ms - chat.p50_ms:+.1f} ms",
            ),
        ]
    errors = sum(result.errors for result in results.values())
    out.append(Figure(section, "errors under load", str(errors), "", "", "0", errors == 0))
    return out


def main() -> None:
    """Print this bench's table."""
    print(render(measure()))


if __name__ == "__main__":
    main()
