"""Latency percentiles: the log-spaced rollup histogram, exact values for small ranges, and
schema version 8's upgrade of a populated version-7 database, on both backends."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

import storage.migrations
from proxy.records import RequestRecord
from storage import MIGRATIONS, migrate, open_connection
from storage.analytics.aggregates import breakdown, summary
from storage.analytics.latency_percentile import estimate_log_percentile, exact_percentile
from storage.analytics.log_latencies import EXACT_PERCENTILE_CALLS
from storage.analytics.usage_filter import UsageFilter
from storage.batch import write_batch
from storage.latency_histogram import LOG_BUCKET_COLUMNS, LOG_BUCKET_EDGES_MS, log_bucket
from storage.postgres_migrations import migrate as migrate_postgres
from storage.postgres_schema import POSTGRES_MIGRATIONS
from storage.rollup import HOUR_MS, LATENCY_BUCKET_COLUMNS
from storage.sql import Connection
from tests.factories import T0, make_record
from tests.storage_backends import connect

H = HOUR_MS
D = (T0 // (24 * H) + 1) * 24 * H
BUCKET_RATIO = max(hi / lo for lo, hi in itertools.pairwise(LOG_BUCKET_EDGES_MS))


@pytest.fixture
def db(database_url: str) -> Iterator[Connection]:
    """An empty migrated read-write database, on each backend."""
    conn = connect(database_url)
    try:
        yield conn
    finally:
        conn.close()


def calls(latencies: Sequence[float], *, start: int = 0, **changes: object) -> list[RequestRecord]:
    """One record per latency, a second apart from ``D``, models alternating."""
    return [
        make_record(
            start + i,
            ts_ms=D + (i % 3600) * 1000,
            latency_ms=latency,
            model=("gpt-4o", "gpt-4o-mini")[i % 2],
            **changes,
        )
        for i, latency in enumerate(latencies)
    ]


def write(conn: Connection, records: list[RequestRecord], *, rows: bool = True) -> None:
    """Store the records in batches of 500, as the writer would; ``rows=False``: only the rollup
    (as when request rows are not recorded), so percentiles come from the histogram."""
    for start in range(0, len(records), 500):
        write_batch(conn, records[start : start + 500], rows=rows)


def nearest_rank(latencies: Sequence[float], percent: int) -> float:
    """The exact percentile, computed independently: the ceil(p/100 * N)-th smallest."""
    ordered = sorted(latencies)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


def within_a_bucket(estimate: float | None, exact: float) -> bool:
    """Whether an estimate is within one bucket's ratio of the exact value."""
    assert estimate is not None
    return exact / BUCKET_RATIO <= estimate <= exact * BUCKET_RATIO


# --- estimated from the rollup ---------------------------------------------------------------


def test_sub_millisecond_calls_stay_within_their_range(db: Connection) -> None:
    rng = random.Random(20)
    latencies = [rng.uniform(0.4, 2.0) for _ in range(400)]
    write(db, calls(latencies), rows=False)
    got = summary(db, D, D + H)
    assert got.requests == got.p95_latency_calls == 400
    assert not got.p95_latency_exact
    assert got.p95_latency_ms is not None
    assert got.p50_latency_ms is not None
    # The coarse histogram said 47.5 ms: 95% of the way through its first bucket, 0-50 ms.
    assert min(latencies) <= got.p50_latency_ms <= got.p95_latency_ms <= max(latencies)
    assert within_a_bucket(got.p95_latency_ms, nearest_rank(latencies, 95))
    assert within_a_bucket(got.p50_latency_ms, nearest_rank(latencies, 50))
    for row in breakdown(db, "model", D, D + H):
        mine = [
            lat for i, lat in enumerate(latencies) if ("gpt-4o", "gpt-4o-mini")[i % 2] == row.key
        ]
        assert row.p95_latency_ms is not None
        assert row.p95_latency_ms <= max(mine)
        assert within_a_bucket(row.p95_latency_ms, nearest_rank(mine, 95)), row.key


def test_a_single_call_is_its_own_percentile(db: Connection) -> None:
    write(db, calls([0.7]), rows=False)
    got = summary(db, D, D + H)
    assert (got.p50_latency_ms, got.p95_latency_ms) == (0.7, 0.7)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_mix_across_decades_interpolates_within_a_bucket(db: Connection, seed: int) -> None:
    rng = random.Random(seed)
    # Log-uniform from 0.2 ms to 300 s, as a gateway serving embeddings and long streams sees.
    latencies = [10 ** rng.uniform(math.log10(0.2), math.log10(300_000)) for _ in range(3000)]
    write(db, calls(latencies), rows=False)
    got = summary(db, D, D + H)
    for percent, value in ((50, got.p50_latency_ms), (95, got.p95_latency_ms)):
        assert within_a_bucket(value, nearest_rank(latencies, percent)), (percent, value)
    assert got.p95_latency_ms is not None
    assert got.p95_latency_ms <= max(latencies)


def test_the_slowest_call_caps_the_open_top_bucket(db: Connection) -> None:
    latencies = [700_000.0, 750_000.0, 800_000.0]  # all past the last edge, 320 s
    write(db, calls(latencies), rows=False)
    got = summary(db, D, D + H)
    assert got.p95_latency_ms is not None
    assert 700_000.0 <= got.p95_latency_ms <= 800_000.0


def test_log_percentile_edges() -> None:
    zeros = [0] * len(LOG_BUCKET_COLUMNS)
    assert estimate_log_percentile(zeros) is None
    one = list(zeros)
    one[log_bucket(1.2)] = 10  # [1, 3.2): rank 9.5 of 10 is 95% of the way on a log scale
    assert estimate_log_percentile(one) == pytest.approx(1.0 * 3.2**0.95)
    assert estimate_log_percentile(one, 95, 1.1, 1.3) == pytest.approx(1.1 * (1.3 / 1.1) ** 0.95)
    top = list(zeros)
    top[-1] = 4
    assert estimate_log_percentile(top) == LOG_BUCKET_EDGES_MS[-1]  # a lower bound, no slowest
    with pytest.raises(ValueError, match="bucket counts"):
        estimate_log_percentile([1, 2])
    with pytest.raises(ValueError, match="percent"):
        estimate_log_percentile(one, 0)
    assert exact_percentile([], 95) is None
    assert exact_percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert exact_percentile([float(i) for i in range(1, 21)], 95) == 19.0  # rank 19 exactly


def test_rollup_log_histogram_matches_the_log(db: Connection) -> None:
    rng = random.Random(7)
    latencies = [10 ** rng.uniform(-2, 6) for _ in range(1000)]
    latencies += [0.0, *LOG_BUCKET_EDGES_MS]  # each edge exactly: it belongs to the bucket above
    write(db, calls(latencies))
    # Independent of the Python bisect: each bucket as SQL bounds on the logged latencies.
    conditions = ["latency_ms < 0.1"] + [
        f"latency_ms >= {lo!r} AND latency_ms < {hi!r}"
        for lo, hi in itertools.pairwise(LOG_BUCKET_EDGES_MS)
    ]
    conditions.append(f"latency_ms >= {LOG_BUCKET_EDGES_MS[-1]!r}")
    expected = db.execute(
        "SELECT model, min(latency_ms), max(latency_ms), "
        + ", ".join(f"sum(CASE WHEN {c} THEN 1 ELSE 0 END)" for c in conditions)
        + " FROM llm_requests GROUP BY 1 ORDER BY 1"
    ).fetchall()
    got = db.execute(
        f"SELECT model, latency_ms_min, latency_ms_max, {', '.join(LOG_BUCKET_COLUMNS)}"
        " FROM usage_hourly ORDER BY 1"
    ).fetchall()
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    # New calls no longer fill the coarse columns: rows of version 8 have the finer ones.
    (coarse,) = db.execute(
        f"SELECT sum({' + '.join(LATENCY_BUCKET_COLUMNS)}) FROM usage_hourly"
    ).fetchall()[0]
    assert coarse == 0


# --- exact from the log -------------------------------------------------------------------------


def test_small_ranges_are_exact(db: Connection) -> None:
    rng = random.Random(3)
    latencies = [rng.lognormvariate(5, 1.5) for _ in range(700)]
    write(db, calls(latencies))
    got = summary(db, D, D + H)
    assert got.p95_latency_exact
    assert got.p95_latency_ms == nearest_rank(latencies, 95)
    assert got.p50_latency_ms == nearest_rank(latencies, 50)
    assert got.p95_latency_calls == 700
    for row in breakdown(db, "model", D, D + H):
        mine = [
            lat for i, lat in enumerate(latencies) if ("gpt-4o", "gpt-4o-mini")[i % 2] == row.key
        ]
        assert (row.p50_latency_ms, row.p95_latency_ms) == (
            nearest_rank(mine, 50),
            nearest_rank(mine, 95),
        )
    # The filter narrows the log as it narrows the rollup, anonymous callers included.
    anonymous = calls([5.0, 6.0, 7.0], start=5000, client_id=None)
    write(db, anonymous)
    nobody = summary(db, D, D + H, UsageFilter(client_id=""))
    assert (nobody.requests, nobody.p95_latency_exact, nobody.p95_latency_ms) == (3, True, 7.0)


def test_a_log_missing_calls_falls_back_to_the_estimate(db: Connection) -> None:
    latencies = [float(i) for i in range(1, 101)]
    write(db, calls(latencies))
    db.execute("DELETE FROM llm_requests WHERE latency_ms = 100.0")  # retention took one
    got = summary(db, D, D + H)
    assert not got.p95_latency_exact
    assert got.p95_latency_ms is not None
    assert got.p95_latency_ms <= 100.0
    assert within_a_bucket(got.p95_latency_ms, 95.0)
    rows = breakdown(db, "model", D, D + H)
    assert [row.key for row in rows] == ["gpt-4o", "gpt-4o-mini"]
    # gpt-4o (the odd latencies) still has every call in the log: exact.
    assert rows[0].p95_latency_ms == nearest_rank(latencies[0::2], 95) == 95.0
    # gpt-4o-mini lost its 100 ms call: estimated, from its own histogram and bounds.
    assert rows[1].p95_latency_ms != nearest_rank(latencies[1::2], 95)
    assert within_a_bucket(rows[1].p95_latency_ms, nearest_rank(latencies[1::2], 95))


def test_large_ranges_are_estimated(db: Connection) -> None:
    latencies = [1.0 + (i % 97) / 10 for i in range(EXACT_PERCENTILE_CALLS + 1)]
    write(db, calls(latencies))
    got = summary(db, D, D + H)
    assert not got.p95_latency_exact
    assert within_a_bucket(got.p95_latency_ms, nearest_rank(latencies, 95))


# --- schema version 8 -----------------------------------------------------------------------------

BEFORE_LOG_HISTOGRAM = 7


def version_7_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A raw connection to a database at schema version 7 and its parameter mark."""
    if database_url.startswith("postgresql"):
        pg = psycopg.connect(database_url, autocommit=True)
        assert migrate_postgres(pg, POSTGRES_MIGRATIONS[:BEFORE_LOG_HISTOGRAM]) == 7
        return pg, "%s"
    conn = open_connection(database_url)
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:BEFORE_LOG_HISTOGRAM])
    assert migrate(conn) == 7
    monkeypatch.undo()
    return conn, "?"


def test_a_populated_version_7_database_upgrades_and_backfills(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(MIGRATIONS) == len(POSTGRES_MIGRATIONS) > BEFORE_LOG_HISTOGRAM
    raw, mark = version_7_database(database_url, monkeypatch)
    marks = ", ".join([mark] * 3)
    # As version 7 wrote them: hour D has all three calls in the log; D+1h lost two of its three
    # to retention; D+2h has only its rollup row (request rows were not recorded).
    log_insert = (
        "INSERT INTO llm_requests (request_id, ts_ms, client_id, provider, model, stream,"
        f" status, http_status, latency_ms) VALUES ({marks}, 'openai', 'm', 0, 'ok', 200, {mark})"
    )
    rollup_insert = (
        "INSERT INTO usage_hourly (hour_ms, client_id, provider, model, requests, latency_ms_sum,"
        f" latency_under_50ms, latency_50_to_100ms, latency_60000ms_or_more) VALUES ({mark}, 'c',"
        f" 'openai', 'm', {marks}, {mark}, {mark})"
    )
    for i, (ts, latency) in enumerate([(D, 0.4), (D + 1, 1.9), (D + 2, 75.0), (D + H, 700.0)]):
        raw.execute(log_insert, (f"r{i}", ts, "c", latency))
    for row in [(D, 3, 77.3, 2, 1, 0), (D + H, 3, 2000.0, 0, 0, 0), (D + 2 * H, 5, 80.0, 5, 0, 0)]:
        raw.execute(rollup_insert, row)
    if mark == "%s":
        raw.close()
        conn = connect(database_url)  # migrates
    else:
        migrate(raw)
        conn = raw
    try:
        rows = conn.execute(
            "SELECT hour_ms, latency_ms_min, latency_ms_max, "
            + ", ".join(LOG_BUCKET_COLUMNS)
            + " FROM usage_hourly ORDER BY 1"
        ).fetchall()
        expected_d = [0] * len(LOG_BUCKET_COLUMNS)
        for latency in (0.4, 1.9, 75.0):
            expected_d[log_bucket(latency)] += 1
        assert [tuple(row) for row in rows] == [
            (D, 0.4, 75.0, *expected_d),  # refined from its three logged calls
            (D + H, None, None, *[0] * len(LOG_BUCKET_COLUMNS)),  # the log lost calls
            (D + 2 * H, None, None, *[0] * len(LOG_BUCKET_COLUMNS)),
        ]
        whole = summary(conn, D, D + 3 * H)
        assert whole.requests == 11
        assert whole.p95_latency_calls == 3  # the refined calls; the coarse ones are left out
        assert whole.p95_latency_ms is not None
        assert whole.p95_latency_ms <= 75.0
        assert within_a_bucket(whole.p95_latency_ms, 75.0)
        # Only coarse rows in the range: the version-4 estimate, as before the upgrade.
        assert summary(conn, D + 2 * H, D + 3 * H).p95_latency_ms == pytest.approx(47.5)
        (coarse_row,) = breakdown(conn, "model", D + 2 * H, D + 3 * H)
        assert coarse_row.p95_latency_ms == pytest.approx(47.5)
        mixed = {row.key: row.p95_latency_ms for row in breakdown(conn, "client", D, D + 3 * H)}
        assert mixed == {"c": whole.p95_latency_ms}
        # New calls count into an unrefined row's log histogram, and set its bounds.
        new = make_record(
            90, ts_ms=D + H, client_id="c", provider="openai", model="m", latency_ms=30.0
        )
        write_batch(conn, [new])
        (bounds,) = conn.execute(
            f"SELECT latency_ms_min, latency_ms_max FROM usage_hourly WHERE hour_ms = {D + H}"
        ).fetchall()
        assert tuple(bounds) == (30.0, 30.0)
        later = summary(conn, D + H, D + 2 * H)
        assert (later.requests, later.p95_latency_calls, later.p95_latency_ms) == (4, 1, 30.0)
    finally:
        conn.close()
