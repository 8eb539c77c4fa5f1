"""Migrations keyed on ``pragma user_version``: migration N brings the schema to version N."""

from __future__ import annotations

import logging

import apsw

from storage.rollup_migration import Dialect, rollup_migration

__all__ = ["MIGRATIONS", "SchemaTooNewError", "check_version", "migrate", "schema_version"]

logger = logging.getLogger("llm_proxy.storage")

# Timestamps are integer Unix milliseconds. Booleans are INTEGER 0/1. STRICT makes a wrongly typed
# value an error at write time instead of a surprise at read time.
_V1_SCHEMA = """
CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    username             TEXT    NOT NULL UNIQUE CHECK (length(username) > 0),
    password_hash        TEXT    NOT NULL,
    role                 TEXT    NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'viewer')),
    display_name         TEXT    NOT NULL DEFAULT '',
    must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_login_at        INTEGER
) STRICT;

CREATE TABLE clients (
    id                    TEXT    PRIMARY KEY NOT NULL CHECK (length(id) > 0),
    name                  TEXT    NOT NULL,
    description           TEXT    NOT NULL DEFAULT '',
    is_active             INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    -- NULL: use the configured default
    rate_limit_per_minute INTEGER CHECK (rate_limit_per_minute >= 0),
    tokens_per_minute     INTEGER CHECK (tokens_per_minute >= 0),
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE client_tokens (
    id           INTEGER PRIMARY KEY,
    client_id    TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    -- hex SHA-256 of the key; the key itself is never stored
    token_sha256 TEXT    NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
    prefix       TEXT    NOT NULL,
    last4        TEXT    NOT NULL,
    name         TEXT    NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX client_tokens_client_id ON client_tokens (client_id);

-- No foreign key on client_id: the log outlives deleted clients and also holds static/anonymous
-- callers.
CREATE TABLE llm_requests (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT    NOT NULL,
    ts_ms             INTEGER NOT NULL,
    client_id         TEXT,
    provider          TEXT,
    model             TEXT    NOT NULL,
    upstream_model    TEXT,
    stream            INTEGER NOT NULL CHECK (stream IN (0, 1)),
    status            TEXT    NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
    http_status       INTEGER NOT NULL,
    error_type        TEXT,
    error_message     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    reasoning_tokens  INTEGER,
    cached_tokens     INTEGER,
    total_tokens      INTEGER,
    -- NULL: unpriced, never 0
    cost_usd          REAL,
    has_images        INTEGER NOT NULL DEFAULT 0 CHECK (has_images IN (0, 1)),
    latency_ms        REAL    NOT NULL DEFAULT 0,
    ttft_ms           REAL,
    overhead_ms       REAL    NOT NULL DEFAULT 0,
    request_body      TEXT,
    response_body     TEXT
) STRICT;
CREATE INDEX llm_requests_ts_ms ON llm_requests (ts_ms);
CREATE INDEX llm_requests_client_ts_ms ON llm_requests (client_id, ts_ms);
CREATE INDEX llm_requests_provider_ts_ms ON llm_requests (provider, ts_ms);
CREATE INDEX llm_requests_model_ts_ms ON llm_requests (model, ts_ms);

-- A missing client/provider is '' rather than NULL: NULLs never conflict in a key, so the upsert
-- would add a row per call instead of updating one.
CREATE TABLE usage_hourly (
    hour_ms           INTEGER NOT NULL CHECK (hour_ms % 3600000 = 0),
    client_id         TEXT    NOT NULL DEFAULT '',
    provider          TEXT    NOT NULL DEFAULT '',
    model             TEXT    NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    -- NULL: no call in the bucket was priced
    cost_usd          REAL,
    latency_ms_sum    REAL    NOT NULL DEFAULT 0,
    PRIMARY KEY (hour_ms, client_id, provider, model)
) STRICT, WITHOUT ROWID;

-- Dashboard overrides of the file config: NULL means "as configured". API keys never live here.
CREATE TABLE provider_settings (
    provider                 TEXT    PRIMARY KEY NOT NULL,
    enabled                  INTEGER CHECK (enabled IN (0, 1)),
    base_url                 TEXT,
    default_model            TEXT,
    max_concurrency          INTEGER CHECK (max_concurrency > 0),
    credit_balance_usd       REAL,
    low_credit_threshold_usd REAL CHECK (low_credit_threshold_usd >= 0),
    updated_at               INTEGER NOT NULL
) STRICT;

CREATE TABLE model_settings (
    model                 TEXT    PRIMARY KEY NOT NULL,
    provider              TEXT,
    upstream_model        TEXT,
    enabled               INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    input_per_mtok        REAL CHECK (input_per_mtok >= 0),
    output_per_mtok       REAL CHECK (output_per_mtok >= 0),
    cached_input_per_mtok REAL CHECK (cached_input_per_mtok >= 0),
    updated_at            INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
    key        TEXT    PRIMARY KEY NOT NULL,
    value_json TEXT    NOT NULL CHECK (json_valid(value_json)),
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    username    TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL DEFAULT '',
    detail_json TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(detail_json))
) STRICT;
CREATE INDEX audit_log_ts_ms ON audit_log (ts_ms);
"""

# Version 2: a change counter for API keys. A running server polls one settings row to learn that
# its key cache is stale, whichever process made the change (its own dashboard or the CLI).
# last_used_at is deliberately not watched: the server itself updates it in batches. The WHEN
# clauses skip updates that change nothing, e.g. re-revoking a key.
_AUTH_GENERATION_BUMP = """
    INSERT INTO settings (key, value_json, updated_at)
    VALUES ('auth_generation', '1', CAST(unixepoch('subsec') * 1000 AS INTEGER))
    ON CONFLICT (key) DO UPDATE SET
        value_json = CAST(CAST(value_json AS INTEGER) + 1 AS TEXT),
        updated_at = excluded.updated_at;
"""

# No initial row: a missing one reads as generation 0 and the first change creates it at 1.
_V2_AUTH_GENERATION = f"""
CREATE TRIGGER clients_auth_insert AFTER INSERT ON clients
BEGIN {_AUTH_GENERATION_BUMP} END;

CREATE TRIGGER clients_auth_delete AFTER DELETE ON clients
BEGIN {_AUTH_GENERATION_BUMP} END;

CREATE TRIGGER clients_auth_update
AFTER UPDATE OF is_active, rate_limit_per_minute, tokens_per_minute ON clients
WHEN old.is_active IS NOT new.is_active
    OR old.rate_limit_per_minute IS NOT new.rate_limit_per_minute
    OR old.tokens_per_minute IS NOT new.tokens_per_minute
BEGIN {_AUTH_GENERATION_BUMP} END;

CREATE TRIGGER client_tokens_auth_insert AFTER INSERT ON client_tokens
BEGIN {_AUTH_GENERATION_BUMP} END;

CREATE TRIGGER client_tokens_auth_delete AFTER DELETE ON client_tokens
BEGIN {_AUTH_GENERATION_BUMP} END;

CREATE TRIGGER client_tokens_auth_update
AFTER UPDATE OF revoked_at, client_id, token_sha256 ON client_tokens
WHEN old.revoked_at IS NOT new.revoked_at
    OR old.client_id IS NOT new.client_id
    OR old.token_sha256 IS NOT new.token_sha256
BEGIN {_AUTH_GENERATION_BUMP} END;
"""

# Fallbacks: how many upstream calls a request took, and why the ones before the answer failed.
_V3_ATTEMPTS = """
ALTER TABLE llm_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1 CHECK (attempts >= 1);
-- NULL when the first attempt answered; else a JSON array of {provider, model, status, error}
ALTER TABLE llm_requests ADD COLUMN failed_attempts TEXT
    CHECK (failed_attempts IS NULL OR json_valid(failed_attempts));
"""

# Version 4: a latency histogram per usage_hourly row, so the dashboard can estimate p95 from the
# rollup. Bucket columns count calls with lower <= latency_ms < upper (storage.rollup keeps the
# edges). Rows from before the upgrade are backfilled from the request log where it still holds
# every call of the row (same count); the others keep zero counts and are left out of the p95
# (retention pruned the log, or request rows were not recorded).
_V4_LATENCY_HISTOGRAM = """
ALTER TABLE usage_hourly ADD COLUMN latency_under_50ms       INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_50_to_100ms      INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_100_to_250ms     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_250_to_500ms     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_500_to_1000ms    INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_1000_to_2500ms   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_2500_to_5000ms   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_5000_to_10000ms  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_10000_to_30000ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_30000_to_60000ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN latency_60000ms_or_more  INTEGER NOT NULL DEFAULT 0;

UPDATE usage_hourly AS u SET
    latency_under_50ms = l.b0,
    latency_50_to_100ms = l.b1,
    latency_100_to_250ms = l.b2,
    latency_250_to_500ms = l.b3,
    latency_500_to_1000ms = l.b4,
    latency_1000_to_2500ms = l.b5,
    latency_2500_to_5000ms = l.b6,
    latency_5000_to_10000ms = l.b7,
    latency_10000_to_30000ms = l.b8,
    latency_30000_to_60000ms = l.b9,
    latency_60000ms_or_more = l.b10
FROM (
    SELECT ts_ms / 3600000 * 3600000 AS hour_ms,
           coalesce(client_id, '') AS client_id,
           coalesce(provider, '') AS provider,
           model,
           count(*) AS calls,
           sum(latency_ms < 50) AS b0,
           sum(latency_ms >= 50 AND latency_ms < 100) AS b1,
           sum(latency_ms >= 100 AND latency_ms < 250) AS b2,
           sum(latency_ms >= 250 AND latency_ms < 500) AS b3,
           sum(latency_ms >= 500 AND latency_ms < 1000) AS b4,
           sum(latency_ms >= 1000 AND latency_ms < 2500) AS b5,
           sum(latency_ms >= 2500 AND latency_ms < 5000) AS b6,
           sum(latency_ms >= 5000 AND latency_ms < 10000) AS b7,
           sum(latency_ms >= 10000 AND latency_ms < 30000) AS b8,
           sum(latency_ms >= 30000 AND latency_ms < 60000) AS b9,
           sum(latency_ms >= 60000) AS b10
    FROM llm_requests
    GROUP BY 1, 2, 3, 4
) AS l
WHERE u.hour_ms = l.hour_ms
    AND u.client_id = l.client_id
    AND u.provider = l.provider
    AND u.model = l.model
    AND u.requests = l.calls;
"""

# Version 5: which client API a call came through (chat, responses, messages, embeddings).
# Every call logged before it came through chat completions, the only API there was. The check
# holds a name, not the list of names: SQLite cannot change a column's check without rebuilding
# the table, and adding an API must not mean rewriting millions of rows.
_V5_ENDPOINT = """
ALTER TABLE llm_requests ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat'
    CHECK (length(endpoint) BETWEEN 1 AND 32);
CREATE INDEX llm_requests_endpoint_ts_ms ON llm_requests (endpoint, ts_ms);
"""

# Version 6: the responses the gateway stores for /v1/responses (`store` not false), so that
# previous_response_id continues a conversation on any provider and GET/DELETE find them. A row
# is the client's alone ('' for anonymous callers); no foreign key, as in the log: static and
# anonymous callers have no clients row. The JSON columns are written only by ResponseStore: the
# input items it encodes itself, the response as the client got it (already parsed for its id).
# A json_valid check would parse megabytes of inlined images a second time on the writer thread.
_V6_STORED_RESPONSES = """
CREATE TABLE stored_responses (
    id                   TEXT    PRIMARY KEY NOT NULL
                         CHECK (id GLOB 'resp_?*' AND length(id) <= 128),
    client_id            TEXT    NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL CHECK (expires_at > created_at),
    model                TEXT    NOT NULL,
    provider             TEXT    NOT NULL,
    previous_response_id TEXT,
    input_items          TEXT    NOT NULL,
    -- the response object as the client got it; its output items are its "output"
    response             TEXT    NOT NULL,
    -- 1: passed through, so the provider holds it too (and can continue it by its id)
    upstream_held        INTEGER NOT NULL DEFAULT 0 CHECK (upstream_held IN (0, 1))
) STRICT;
-- Retention deletes by either: past the expiry set when stored, or older than the retention
-- configured now (which may have been lowered since).
CREATE INDEX stored_responses_expires_at ON stored_responses (expires_at);
CREATE INDEX stored_responses_created_at ON stored_responses (created_at);
"""

# Version 7: prompt tokens written to the provider's cache (Anthropic bills them above the input
# rate), so a logged call's cost can be checked against its counts. NULL: the upstream did not say.
_V7_CACHE_WRITE_TOKENS = """
ALTER TABLE llm_requests ADD COLUMN cache_write_tokens INTEGER
    CHECK (cache_write_tokens IS NULL OR cache_write_tokens >= 0);
"""


# Version 8: the instance that served each call (llm_requests.instance), and usage_hourly keyed
# by endpoint and instance too, with a log-spaced latency histogram (storage.latency_histogram:
# 15 buckets, 0.1 ms to 320 s) and the fastest and slowest call of each row, so percentiles are
# right for sub-millisecond calls and never above the slowest call. Separate integer columns, not
# one JSON array: the upsert adds them as plain sums and the dashboard sums them, on both
# backends alike. See storage.rollup_migration for the rebuild and what is backfilled.
_V8_ENDPOINT_INSTANCE_ROLLUP = rollup_migration(
    Dialect(
        integer="INTEGER",
        text="TEXT",
        real="REAL",
        count_where="sum({})",
        table_suffix=" STRICT, WITHOUT ROWID",
        after_rename="",
    )
)

# Version 9, spend control: a client's daily and monthly USD budgets (NULL: none) and the percent
# of either at which it warns; the gateway-wide budget and each provider's monthly one (the
# operator's bill per upstream) in a table of their own rather than in ``settings`` (whose rows
# the dashboard's settings API may write as free JSON) or ``provider_settings`` (overrides of the
# file config, keyed by providers that exist now): a budget keeps its CHECKs and outlives a
# provider's removal.
# scope 'global' has the one row named ''; a provider's budget is monthly only.
_V9_BUDGETS = """
ALTER TABLE clients ADD COLUMN budget_day_usd REAL CHECK (budget_day_usd > 0);
ALTER TABLE clients ADD COLUMN budget_month_usd REAL CHECK (budget_month_usd > 0);
ALTER TABLE clients ADD COLUMN budget_warn_percent INTEGER NOT NULL DEFAULT 80
    CHECK (budget_warn_percent BETWEEN 1 AND 100);
CREATE TABLE budgets (
    scope        TEXT    NOT NULL CHECK (scope IN ('global', 'provider')),
    name         TEXT    NOT NULL CHECK ((scope = 'global') = (name = '')),
    day_usd      REAL    CHECK (day_usd IS NULL OR (day_usd > 0 AND scope = 'global')),
    month_usd    REAL    CHECK (month_usd > 0),
    warn_percent INTEGER NOT NULL DEFAULT 80 CHECK (warn_percent BETWEEN 1 AND 100),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, name)
) STRICT;
"""

MIGRATIONS: tuple[str, ...] = (
    _V1_SCHEMA,
    _V2_AUTH_GENERATION,
    _V3_ATTEMPTS,
    _V4_LATENCY_HISTOGRAM,
    _V5_ENDPOINT,
    _V6_STORED_RESPONSES,
    _V7_CACHE_WRITE_TOKENS,
    _V8_ENDPOINT_INSTANCE_ROLLUP,
    _V9_BUDGETS,
)
"""SQL scripts in order; never edit a released one, append a new one."""


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer llm-proxy than this one."""


def schema_version(conn: apsw.Connection) -> int:
    """Return the database's ``user_version``."""
    return int(conn.pragma("user_version"))


def check_version(current: int, target: int) -> int:
    """Return ``current``, or refuse a database from a newer llm-proxy."""
    if current > target:
        raise SchemaTooNewError(
            f"database schema version {current} is newer than this llm-proxy knows ({target});"
            " upgrade llm-proxy or restore a matching backup"
        )
    return current


def _enable_incremental_vacuum(conn: apsw.Connection) -> None:
    """Turn on incremental auto-vacuum while the database still has no tables."""
    # The WAL switch at open already wrote page 1, so the setting only sticks after a VACUUM,
    # which is instant on an empty file and impossible once tables exist.
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()[0]
    if tables != 0 or int(conn.pragma("auto_vacuum")) == 2:
        return
    conn.pragma("auto_vacuum", "INCREMENTAL")
    conn.execute("VACUUM")


def migrate(conn: apsw.Connection) -> int:
    """Apply pending migrations, each with its version bump in one transaction; return the version.

    Blocking: call it from a worker thread.
    """
    migrations = MIGRATIONS
    target = len(migrations)
    current = check_version(schema_version(conn), target)
    if current == 0:
        _enable_incremental_vacuum(conn)
    saved_mode = conn.transaction_mode
    # IMMEDIATE takes the write lock up front, so two processes migrating at once serialize here
    # and the second one sees the version the first one wrote.
    conn.transaction_mode = "IMMEDIATE"
    try:
        while current < target:
            with conn:
                current = check_version(schema_version(conn), target)
                if current == target:
                    break
                conn.execute(migrations[current])
                current += 1
                conn.pragma("user_version", current)
            logger.info("database migrated to schema version %d", current)
    finally:
        conn.transaction_mode = saved_mode
    return current
