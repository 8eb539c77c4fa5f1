"""Aggregate request records into ``usage_hourly`` rows, one per (hour, client, provider, model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from proxy.records import RequestRecord

__all__ = ["HOUR_MS", "UPSERT_USAGE_HOURLY", "UsageRollup"]

HOUR_MS = 3_600_000

UPSERT_USAGE_HOURLY = """
INSERT INTO usage_hourly (
    hour_ms, client_id, provider, model, requests, errors, prompt_tokens, completion_tokens,
    reasoning_tokens, cached_tokens, cost_usd, latency_ms_sum
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ms, client_id, provider, model) DO UPDATE SET
    requests = requests + excluded.requests,
    errors = errors + excluded.errors,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
    cached_tokens = cached_tokens + excluded.cached_tokens,
    -- NULL + x is NULL: fall back to whichever side was priced, NULL only when neither was
    cost_usd = coalesce(cost_usd + excluded.cost_usd, cost_usd, excluded.cost_usd),
    latency_ms_sum = latency_ms_sum + excluded.latency_ms_sum
"""

_Key = tuple[int, str, str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class _Sums:
    """Running totals of one usage_hourly key, in the column order of the upsert."""

    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    latency_ms_sum: float = 0.0

    def plus(self, record: RequestRecord) -> _Sums:
        """These totals with ``record`` counted; built whole, so a bad record changes nothing."""
        cost = self.cost_usd
        if record.cost_usd is not None:
            cost = (cost or 0.0) + record.cost_usd
        return _Sums(
            self.requests + 1,
            self.errors + (record.status != "ok"),
            self.prompt_tokens + (record.prompt_tokens or 0),
            self.completion_tokens + (record.completion_tokens or 0),
            self.reasoning_tokens + (record.reasoning_tokens or 0),
            self.cached_tokens + (record.cached_tokens or 0),
            cost,
            self.latency_ms_sum + record.latency_ms,
        )


class UsageRollup:
    """Per-batch totals, so a batch costs one upsert per distinct key instead of one per row."""

    __slots__ = ("_sums",)

    def __init__(self, records: Iterable[RequestRecord] = ()) -> None:
        self._sums: dict[_Key, _Sums] = {}
        for record in records:
            self.add(record)

    def add(self, record: RequestRecord) -> None:
        """Count one record; a malformed record raises before anything changes."""
        key = (
            record.ts_ms // HOUR_MS * HOUR_MS,
            record.client_id or "",
            record.provider or "",
            record.model,
        )
        self._sums[key] = self._sums.get(key, _EMPTY).plus(record)

    def rows(self) -> list[tuple[object, ...]]:
        """Parameters for ``UPSERT_USAGE_HOURLY``, one tuple per key."""
        return [(*key, *dataclasses.astuple(sums)) for key, sums in self._sums.items()]


_EMPTY = _Sums()
