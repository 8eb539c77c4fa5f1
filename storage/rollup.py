"""Aggregate request records into ``usage_hourly`` rows, one per (hour, client, provider, model,
endpoint, instance)."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable

from proxy.records import RequestRecord
from storage.latency_histogram import LOG_BUCKET_COLUMNS, log_bucket

__all__ = [
    "HOUR_MS",
    "LATENCY_BUCKET_COLUMNS",
    "LATENCY_BUCKET_EDGES_MS",
    "UPSERT_USAGE_HOURLY",
    "UsageRollup",
    "latency_bucket",
]

HOUR_MS = 3_600_000

LATENCY_BUCKET_EDGES_MS: tuple[int, ...] = (
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
)
"""Upper edges (exclusive) of the latency histogram's buckets; a last bucket holds the rest.

Bucket 0 counts calls under ``EDGES[0]``, bucket ``i`` those with ``EDGES[i-1] <= latency_ms <
EDGES[i]``, the last one those of ``EDGES[-1]`` and more. Fixed by migration 4: changing them
needs a new migration."""

LATENCY_BUCKET_COLUMNS: tuple[str, ...] = (
    "latency_under_50ms",
    "latency_50_to_100ms",
    "latency_100_to_250ms",
    "latency_250_to_500ms",
    "latency_500_to_1000ms",
    "latency_1000_to_2500ms",
    "latency_2500_to_5000ms",
    "latency_5000_to_10000ms",
    "latency_10000_to_30000ms",
    "latency_30000_to_60000ms",
    "latency_60000ms_or_more",
)
"""The ``usage_hourly`` columns of the buckets, in order (one more than there are edges).

Since schema version 8 new calls count into the log-spaced buckets of
``storage.latency_histogram`` instead; these keep what rows written before it held."""


def latency_bucket(latency_ms: float) -> int:
    """The index of the histogram bucket that counts a call of ``latency_ms``."""
    return bisect.bisect_right(LATENCY_BUCKET_EDGES_MS, latency_ms)


_BUCKETS = len(LOG_BUCKET_COLUMNS)
_COLUMNS = (
    "hour_ms",
    "client_id",
    "provider",
    "model",
    "endpoint",
    "instance",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cost_usd",
    "latency_ms_sum",
    "latency_ms_min",
    "latency_ms_max",
    *LOG_BUCKET_COLUMNS,
)
# The target's columns are named with its table: PostgreSQL finds a bare name ambiguous beside
# excluded's (SQLite accepts either).
_SET_SUMS = ",\n    ".join(
    f"{name} = usage_hourly.{name} + excluded.{name}"
    for name in _COLUMNS[6:]
    if name not in ("cost_usd", "latency_ms_min", "latency_ms_max")
)

UPSERT_USAGE_HOURLY = f"""
INSERT INTO usage_hourly ({", ".join(_COLUMNS)})
VALUES ({", ".join("?" * len(_COLUMNS))})
ON CONFLICT (hour_ms, client_id, provider, model, endpoint, instance) DO UPDATE SET
    {_SET_SUMS},
    -- NULL + x is NULL: fall back to whichever side was priced, NULL only when neither was
    cost_usd = coalesce(
        usage_hourly.cost_usd + excluded.cost_usd, usage_hourly.cost_usd, excluded.cost_usd
    ),
    -- a CASE, as min/max of two values is spelled differently on the two backends; a NULL bound
    -- (a row from before version 8 the log could not refine) gives way to the new calls' bound
    latency_ms_min = CASE WHEN usage_hourly.latency_ms_min <= excluded.latency_ms_min
        THEN usage_hourly.latency_ms_min ELSE excluded.latency_ms_min END,
    latency_ms_max = CASE WHEN usage_hourly.latency_ms_max >= excluded.latency_ms_max
        THEN usage_hourly.latency_ms_max ELSE excluded.latency_ms_max END
"""

_Key = tuple[int, str, str, str, str, str]


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
    latency_ms_min: float | None = None
    latency_ms_max: float | None = None
    latency_buckets: tuple[int, ...] = (0,) * _BUCKETS

    def plus(self, record: RequestRecord) -> _Sums:
        """These totals with ``record`` counted; built whole, so a bad record changes nothing."""
        cost = self.cost_usd
        if record.cost_usd is not None:
            cost = (cost or 0.0) + record.cost_usd
        latency = record.latency_ms
        bucket = log_bucket(latency)
        buckets = list(self.latency_buckets)
        buckets[bucket] += 1
        return _Sums(
            self.requests + 1,
            self.errors + (record.status != "ok"),
            self.prompt_tokens + (record.prompt_tokens or 0),
            self.completion_tokens + (record.completion_tokens or 0),
            self.reasoning_tokens + (record.reasoning_tokens or 0),
            self.cached_tokens + (record.cached_tokens or 0),
            cost,
            self.latency_ms_sum + latency,
            latency if self.latency_ms_min is None else min(self.latency_ms_min, latency),
            latency if self.latency_ms_max is None else max(self.latency_ms_max, latency),
            tuple(buckets),
        )

    def row(self) -> tuple[object, ...]:
        """The totals as upsert parameters, the histogram flattened into its columns."""
        return (
            self.requests,
            self.errors,
            self.prompt_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
            self.cached_tokens,
            self.cost_usd,
            self.latency_ms_sum,
            self.latency_ms_min,
            self.latency_ms_max,
            *self.latency_buckets,
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
            record.endpoint,
            record.instance or "",
        )
        self._sums[key] = self._sums.get(key, _EMPTY).plus(record)

    def rows(self) -> list[tuple[object, ...]]:
        """Parameters for ``UPSERT_USAGE_HOURLY``, one tuple per key, in key order: writers that
        share a database (PostgreSQL's fleet) then lock the rows they both touch in the same
        order, and one waits for the other instead of deadlocking."""
        return [(*key, *self._sums[key].row()) for key in sorted(self._sums)]


_EMPTY = _Sums()
