"""The request log's rows (``llm_requests``): the record, its columns, the filter, the cursor.

What ``request_log`` and ``export`` share: both honour the range to the millisecond and page by
keyset on ``(ts_ms, id)`` with an opaque cursor, so calls logged meanwhile never shift or repeat
rows across pages.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Sequence
from typing import Any, Final, Literal

from proxy.records import ENDPOINTS, Endpoint
from storage.analytics.results import Result
from storage.analytics.usage_filter import UsageFilter, check_range

__all__ = [
    "REQUEST_COLUMNS",
    "SELECT_ROW",
    "RequestRow",
    "StatusFilter",
    "decode_cursor",
    "encode_cursor",
    "log_where",
    "request_row",
]

StatusFilter = Literal["ok", "error", "cancelled"]

_STATUSES: Final = frozenset({"ok", "error", "cancelled"})


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRow(Result):
    """One logged call: every ``llm_requests`` column except the bodies."""

    id: int
    """The row id: the key of ``request_detail`` and of the pagination."""
    request_id: str
    ts_ms: int
    client_id: str | None
    provider: str | None
    model: str
    upstream_model: str | None
    stream: bool
    status: str
    http_status: int
    error_type: str | None
    error_message: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    cached_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    has_images: bool
    latency_ms: float
    ttft_ms: float | None
    overhead_ms: float
    attempts: int
    failed_attempts: str | None
    """The fallbacks' failures as stored: JSON text (an array), or None."""
    endpoint: str
    """The client API the call came through (``chat``, ``responses``, ...); last, so the CSV's
    earlier columns keep their places."""
    cache_write_tokens: int | None
    """Prompt tokens written to the provider's cache (Anthropic's); after ``endpoint`` for the
    same reason."""
    instance: str | None
    """The gateway process that served the call; None for calls logged before schema version 8.
    Last, for the same reason."""


REQUEST_COLUMNS: Final = tuple(field.name for field in dataclasses.fields(RequestRow))
"""The request log's columns, in order (also the CSV header)."""
SELECT_ROW: Final = ", ".join(REQUEST_COLUMNS)
_STREAM = REQUEST_COLUMNS.index("stream")
_HAS_IMAGES = REQUEST_COLUMNS.index("has_images")


def request_row(values: Sequence[Any]) -> RequestRow:
    """A ``RequestRow`` from the values of ``SELECT_ROW`` (booleans stored as 0/1)."""
    fields = list(values)
    fields[_STREAM] = bool(fields[_STREAM])
    fields[_HAS_IMAGES] = bool(fields[_HAS_IMAGES])
    return RequestRow(*fields)


_CURSOR_TEXT = re.compile(r"(-?[0-9]{1,19}):([0-9]{1,19})")
_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]{1,80}")


def encode_cursor(ts_ms: int, row_id: int) -> str:
    """An opaque cursor naming the position just past row ``(ts_ms, row_id)``."""
    return base64.urlsafe_b64encode(f"{ts_ms}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The ``(ts_ms, id)`` a cursor names; ``ValueError`` when it is not one of ours."""
    error = ValueError("malformed cursor: pass back a 'next_cursor' value unchanged")
    if not _CURSOR_CHARS.fullmatch(cursor):
        raise error
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise error from None
    match = _CURSOR_TEXT.fullmatch(text)
    if match is None:
        raise error
    ts_ms, row_id = int(match[1]), int(match[2])
    if not (abs(ts_ms) < 2**62 and row_id < 2**63):
        raise error
    return ts_ms, row_id


def log_where(
    since_ms: int,
    until_ms: int,
    flt: UsageFilter,
    status: str | None,
    endpoint: Endpoint | None = None,
) -> tuple[list[str], dict[str, object]]:
    """WHERE clauses on ``llm_requests`` for the exact range, the filter, the status and the
    endpoint."""
    check_range(since_ms, until_ms)
    clauses = ["ts_ms >= :since", "ts_ms < :until"]
    params: dict[str, object] = {"since": since_ms, "until": until_ms}
    # Each equality lets SQLite use that column's (column, ts_ms) index; the log stores a missing
    # client, provider or instance as NULL where the rollup and the filter say ''. The instance has
    # no index of its own (one more to update per logged call): a fleet has few instances, each
    # holding a good share of the calls, so walking the time index finds a page of one soon.
    for name, value in (
        ("client_id", flt.client_id),
        ("provider", flt.provider),
        ("model", flt.model),
        ("instance", flt.instance),
    ):
        if value == "" and name != "model":
            clauses.append(f"{name} IS NULL")
        elif value is not None:
            clauses.append(f"{name} = :{name}")
            params[name] = value
    if status is not None:
        if status not in _STATUSES:
            raise ValueError("status must be 'ok', 'error' or 'cancelled'")
        clauses.append("status = :status")
        params["status"] = status
    chosen: str | None = endpoint if endpoint is not None else flt.endpoint
    if chosen is not None:
        if chosen not in ENDPOINTS:
            raise ValueError(f"'endpoint' must be one of {', '.join(ENDPOINTS)}; got {chosen!r}.")
        # Uses the (endpoint, ts_ms) index: the rarer endpoints are found without a scan.
        clauses.append("endpoint = :endpoint")
        params["endpoint"] = chosen
    return clauses, params
