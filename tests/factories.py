"""Builders of test data shared by several test modules."""

from __future__ import annotations

import dataclasses

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
