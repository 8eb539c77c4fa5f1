"""Latency percentiles (the dashboard's p50 and p95): exact from sorted latencies, or estimated
from the rollup's latency histograms.

``usage_hourly`` keeps a count of calls per latency bucket (``storage.rollup``), not every
latency, so the p95 of millions of calls is a few column sums; the price is an estimate. Rows
written since schema version 8 carry a log-spaced histogram (``storage.latency_histogram``) and
their fastest and slowest call: ``estimate_log_percentile`` is within one bucket's ratio (3.2) of
the exact value and never outside [fastest, slowest]. Older rows the log could not refine only
have the coarse version-4 histogram (``estimate_percentile``), used when nothing finer exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from storage.latency_histogram import LOG_BUCKET_COLUMNS, LOG_BUCKET_EDGES_MS
from storage.rollup import LATENCY_BUCKET_COLUMNS, LATENCY_BUCKET_EDGES_MS

__all__ = ["estimate_log_percentile", "estimate_percentile", "exact_percentile"]


def _check_percent(percent: int) -> None:
    """Refuse a percentile outside (0, 100]."""
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")


def exact_percentile(ordered: Sequence[float], percent: int = 95) -> float | None:
    """The nearest-rank percentile of latencies sorted ascending: the ``ceil(percent/100 * N)``-th
    smallest; None when there are none."""
    _check_percent(percent)
    if not ordered:
        return None
    # Integer arithmetic: ceil(percent * N / 100) without a float rounding at exact ranks.
    rank = -(-percent * len(ordered) // 100)
    return ordered[max(rank, 1) - 1]


def estimate_log_percentile(
    counts: Sequence[int],
    percent: int = 95,
    fastest_ms: float | None = None,
    slowest_ms: float | None = None,
) -> float | None:
    """Estimate a latency percentile from log-spaced bucket counts (``LOG_BUCKET_COLUMNS``) and
    the fastest and slowest call they count.

    Finds the bucket holding the call of rank ``percent/100 * N`` and interpolates inside it on a
    log scale, as if its calls were spread evenly over the logarithm of latency; the bucket's
    bounds are narrowed to [fastest, slowest] first, so the open top bucket ends at the slowest
    call and a bucket holding every call spans just those calls. The result is in the bucket of
    the exact (nearest-rank) value or touches its edge, so within a factor 3.2 of it, and never
    below the fastest or above the slowest call. None when all counts are 0.
    """
    if len(counts) != len(LOG_BUCKET_COLUMNS):
        raise ValueError(f"expected {len(LOG_BUCKET_COLUMNS)} bucket counts")
    _check_percent(percent)
    total = sum(counts)
    if total == 0:
        return None
    index, share = _bucket_of_rank(counts, percent * total)
    lower = 0.0 if index == 0 else LOG_BUCKET_EDGES_MS[index - 1]
    upper = LOG_BUCKET_EDGES_MS[index] if index < len(LOG_BUCKET_EDGES_MS) else math.inf
    if fastest_ms is not None:
        lower = max(lower, fastest_ms)
    if slowest_ms is not None:
        upper = min(upper, slowest_ms)
    if math.isinf(upper):
        return lower  # the open top bucket without a known slowest call: a lower bound
    upper = max(upper, lower)
    if lower > 0:
        return float(lower * (upper / lower) ** share)
    return float(lower + (upper - lower) * share)


def estimate_percentile(counts: Sequence[int], percent: int = 95) -> float | None:
    """Estimate a latency percentile from the coarse version-4 bucket counts
    (``LATENCY_BUCKET_COLUMNS``): rows the log could not refine to the log-spaced histogram.

    Finds the bucket holding the call of rank ``percent/100 * N`` and interpolates linearly
    inside it, as if its calls were spread evenly.

    Error bound: the exact percentile (nearest-rank: the ``ceil(percent/100 * N)``-th smallest
    latency) lies in the same bucket as the estimate, so the two differ by less than that
    bucket's width: < 50 ms when the exact value is under 100 ms, < 150 ms under 250 ms, < 250 ms
    under 500 ms, < 500 ms under 1 s, < 1.5 s under 2.5 s, < 2.5 s under 5 s, < 5 s under 10 s,
    < 20 s under 30 s, < 30 s under 60 s. Above 50 ms that is within a factor of 3 of the exact
    value (the 10–30 s bucket; a factor 2 or 2.5 elsewhere). In the open top bucket (60 s and
    more) the estimate is its lower edge, 60000 ms: a lower bound. None when all counts are 0.
    """
    if len(counts) != len(LATENCY_BUCKET_COLUMNS):
        raise ValueError(f"expected {len(LATENCY_BUCKET_COLUMNS)} bucket counts")
    _check_percent(percent)
    total = sum(counts)
    if total == 0:
        return None
    index, share = _bucket_of_rank(counts, percent * total)
    lower = 0 if index == 0 else LATENCY_BUCKET_EDGES_MS[index - 1]
    if index == len(LATENCY_BUCKET_EDGES_MS):
        return float(lower)
    return lower + (LATENCY_BUCKET_EDGES_MS[index] - lower) * share


def _bucket_of_rank(counts: Sequence[int], rank_x100: int) -> tuple[int, float]:
    """The bucket holding the call of rank ``rank_x100 / 100`` (counts not all 0), and how far
    into its calls that rank lies (0–1). Integer arithmetic: no rounding at bucket boundaries."""
    below = 0
    for index, count in enumerate(counts):
        if count and (below + count) * 100 >= rank_x100:
            return index, (rank_x100 - below * 100) / (count * 100)
        below += count
    raise AssertionError("unreachable: the last non-empty bucket reaches the rank")
