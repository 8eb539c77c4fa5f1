"""Builders of test data shared by several test modules."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator

from proxy.records import RequestRecord

T0 = 1_700_000_000_000


def make_record(i: int, **changes: object) -> RequestRecord:
    """A plausible successful call record number ``i``, with ``changes`` applied."""
    record = RequestRecord(
        request_id=f"req-{i}",
        ts_ms=T0 + i * 1000,
        client_id="client-a",
        provider="openai",
        model="gpt-4o-mini",
        upstream_model="gpt-4o-mini-2024-07-18",
        stream=False,
        status="ok",
        http_status=200,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        cost_usd=0.001,
        latency_ms=12.5,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


# (provider, model, USD per million prompt tokens, per million completion tokens or None when
# unpriced, median latency in ms): a realistic mix for analytics tests and benchmarks.
MODEL_MIX: tuple[tuple[str, str, float, float | None, float], ...] = (
    ("openai", "gpt-4o-mini", 0.15, 0.60, 900.0),
    ("openai", "gpt-4o", 2.50, 10.0, 1800.0),
    ("gemini", "gemini-2.5-flash", 0.30, 2.50, 1100.0),
    ("gemini", "gemini-2.5-pro", 1.25, 10.0, 4500.0),
    ("deepseek", "deepseek-chat", 0.27, 1.10, 2500.0),
    ("ollama", "llama3.1:8b", 0.0, None, 600.0),
)
CLIENT_MIX: tuple[str | None, ...] = ("app-web", "app-mobile", "batch-jobs", "ci", "analyst", None)


def spread_records(
    count: int, *, start_ms: int = T0, span_ms: int = 86_400_000, seed: int = 0
) -> Iterator[RequestRecord]:
    """``count`` plausible records spread evenly (with jitter) over ``[start_ms, start_ms +
    span_ms)``, in time order: several clients, providers and models, log-normal latencies, a few
    errors and cancellations, one model unpriced. Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    step = span_ms / count
    for i in range(count):
        provider, model, input_price, output_price, median_ms = MODEL_MIX[
            min(int(rng.expovariate(0.6)), len(MODEL_MIX) - 1)
        ]
        roll = rng.random()
        status = "ok" if roll < 0.97 else "error" if roll < 0.99 else "cancelled"
        ok = status == "ok"
        prompt = int(rng.lognormvariate(6.0, 1.0)) if ok else None
        completion = int(rng.lognormvariate(5.0, 0.8)) if ok else None
        cached = prompt // 2 if prompt is not None and rng.random() < 0.3 else 0
        cost = None
        if prompt is not None and completion is not None and output_price is not None:
            cost = (prompt * input_price + completion * output_price) / 1_000_000
        yield RequestRecord(
            request_id=f"req-{seed}-{i}",
            ts_ms=start_ms + min(int(i * step + rng.random() * step), span_ms - 1),
            client_id=CLIENT_MIX[int(rng.random() * len(CLIENT_MIX))],
            provider=provider,
            model=model,
            upstream_model=model,
            stream=rng.random() < 0.6,
            status=status,
            http_status=200 if ok else 502 if status == "error" else 499,
            error_type=None if ok else "upstream_error" if status == "error" else "cancelled",
            error_message=None if ok else "upstream returned 502",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=cached if ok else None,
            total_tokens=None if prompt is None or completion is None else prompt + completion,
            cost_usd=cost,
            latency_ms=round(rng.lognormvariate(math.log(median_ms), 0.7), 1),
            ttft_ms=None,
            overhead_ms=round(rng.random(), 2),
        )
