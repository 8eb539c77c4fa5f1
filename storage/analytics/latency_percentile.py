"""A latency percentile (the dashboard's p95) estimated from the rollup's latency histogram.

``usage_hourly`` keeps a count of calls per latency bucket (``storage.rollup``), not every
latency, so the p95 of millions of calls is a few column sums; the price is an estimate, within
one bucket's width of the exact value (the bound is spelled out on ``estimate_percentile``).
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.rollup import LATENCY_BUCKET_COLUMNS, LATENCY_BUCKET_EDGES_MS

__all__ = ["estimate_percentile"]


def estimate_percentile(counts: Sequence[int], percent: int = 95) -> float | None:
    """Estimate a latency percentile from histogram bucket counts (``LATENCY_BUCKET_COLUMNS``).

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
    if not 0 < percent <= 100:
        raise ValueError("percent must be in (0, 100]")
    total = sum(counts)
    if total == 0:
        return None
    # Integer arithmetic: rank = percent * total / 100 exactly, no rounding at bucket boundaries.
    rank_x100 = percent * total
    below = 0
    for index, count in enumerate(counts):
        if count and (below + count) * 100 >= rank_x100:
            lower = 0 if index == 0 else LATENCY_BUCKET_EDGES_MS[index - 1]
            if index == len(LATENCY_BUCKET_EDGES_MS):
                return float(lower)
            width = LATENCY_BUCKET_EDGES_MS[index] - lower
            return lower + width * (rank_x100 - below * 100) / (count * 100)
        below += count
    raise AssertionError("unreachable: the last non-empty bucket reaches the rank")
