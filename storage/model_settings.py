"""Per-model overrides from the dashboard: routing, on/off and prices.

Plain functions of an APSW connection; writes run inside the caller's transaction (see
``storage.clients``). A NULL column means "as configured" (file config, then the price table).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import apsw

from storage.clients import UNCHANGED, Unchanged
from storage.sql import Connection, bytewise
from storage.values import as_opt_float

__all__ = [
    "MAX_MODEL_LENGTH",
    "MAX_PRICE_PER_MTOK",
    "ModelSettingsRow",
    "delete_model_settings",
    "get_model_settings",
    "list_model_settings",
    "put_model_settings",
]

MAX_MODEL_LENGTH = 200
MAX_PRICE_PER_MTOK = 1e6
"""USD per million tokens; anything above is a typo (a whole-dollar price per token, say)."""


@dataclass(frozen=True, slots=True)
class ModelSettingsRow:
    """A model's overrides; None: as configured."""

    model: str
    provider: str | None
    upstream_model: str | None
    enabled: bool
    input_per_mtok: float | None
    output_per_mtok: float | None
    cached_input_per_mtok: float | None
    updated_at: int


_SELECT = """
SELECT model, provider, upstream_model, enabled, input_per_mtok, output_per_mtok,
       cached_input_per_mtok, updated_at
FROM model_settings
"""


# --- validation -------------------------------------------------------------------------------


def _check_text(value: str, what: str) -> str:
    """``value`` unless it is empty, too long, padded with spaces or has control characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if not value or len(value) > MAX_MODEL_LENGTH:
        raise ValueError(f"{what} must be 1 to {MAX_MODEL_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError(f"{what} must not contain control characters")
    if value != value.strip():
        raise ValueError(f"{what} must not start or end with spaces")
    return value


def _check_price(value: float, what: str) -> float:
    """``value`` as a float unless it is not a finite number in 0..1e6."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    price = float(value)
    if not math.isfinite(price):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if not 0 <= price <= MAX_PRICE_PER_MTOK:
        raise ValueError(f"{what} must be between 0 and {MAX_PRICE_PER_MTOK:g}, got {value!r}")
    return price


# --- rows ---------------------------------------------------------------------------------------


def _row(row: apsw.SQLiteValues) -> ModelSettingsRow:
    (model, provider, upstream, enabled, price_in, price_out, price_cached, updated) = row
    if not isinstance(updated, int):
        raise TypeError(f"expected an integer from the database, got {updated!r}")
    return ModelSettingsRow(
        model=str(model),
        provider=None if provider is None else str(provider),
        upstream_model=None if upstream is None else str(upstream),
        enabled=bool(enabled),
        input_per_mtok=as_opt_float(price_in),
        output_per_mtok=as_opt_float(price_out),
        cached_input_per_mtok=as_opt_float(price_cached),
        updated_at=updated,
    )


# --- reads --------------------------------------------------------------------------------------


def get_model_settings(conn: Connection, model: str) -> ModelSettingsRow | None:
    """A model's overrides, or None when it has none."""
    rows = conn.execute(_SELECT + " WHERE model = ?", (model,)).fetchall()
    return _row(rows[0]) if rows else None


def list_model_settings(conn: Connection) -> list[ModelSettingsRow]:
    """Every model with overrides, by name."""
    return [
        _row(row)
        for row in conn.execute(_SELECT + " ORDER BY " + bytewise(conn, "model")).fetchall()
    ]


# --- writes -------------------------------------------------------------------------------------


def put_model_settings(
    conn: Connection,
    model: str,
    *,
    provider: str | Unchanged | None = UNCHANGED,
    upstream_model: str | Unchanged | None = UNCHANGED,
    enabled: bool | Unchanged = UNCHANGED,
    input_per_mtok: float | Unchanged | None = UNCHANGED,
    output_per_mtok: float | Unchanged | None = UNCHANGED,
    cached_input_per_mtok: float | Unchanged | None = UNCHANGED,
    now_ms: int,
) -> ModelSettingsRow:
    """Create or change a model's overrides, only the fields given; None: back to the default.

    ``enabled`` cannot be None: a new row starts enabled. Nothing given: an existing row stays
    as it is (``updated_at`` too), a missing one is created with the defaults.
    """
    model = _check_text(model, "model")
    changes: dict[str, object] = {}
    if provider is not UNCHANGED:
        changes["provider"] = None if provider is None else _check_text(provider, "provider")
    if upstream_model is not UNCHANGED:
        changes["upstream_model"] = (
            None if upstream_model is None else _check_text(upstream_model, "upstream_model")
        )
    if enabled is not UNCHANGED:
        if not isinstance(enabled, bool):
            raise ValueError(f"enabled must be true or false, got {enabled!r}")
        changes["enabled"] = int(enabled)
    for column, value in (
        ("input_per_mtok", input_per_mtok),
        ("output_per_mtok", output_per_mtok),
        ("cached_input_per_mtok", cached_input_per_mtok),
    ):
        if value is not UNCHANGED:
            changes[column] = None if value is None else _check_price(value, column)
    if changes:
        # Column names come from the fixed set above, never from the caller.
        columns = ", ".join(changes)
        marks = ", ".join("?" for _ in changes)
        assignments = ", ".join(f"{column} = excluded.{column}" for column in changes)
        conn.execute(
            f"INSERT INTO model_settings (model, {columns}, updated_at) VALUES (?, {marks}, ?)"
            f" ON CONFLICT (model) DO UPDATE SET {assignments}, updated_at = excluded.updated_at",
            (model, *changes.values(), now_ms),
        )
    else:
        conn.execute(
            "INSERT INTO model_settings (model, updated_at) VALUES (?, ?)"
            " ON CONFLICT (model) DO NOTHING",
            (model, now_ms),
        )
    row = get_model_settings(conn, model)
    if row is None:  # pragma: no cover - the upsert above guarantees a row
        raise RuntimeError(f"model settings for {model!r} vanished")
    return row


def delete_model_settings(conn: Connection, model: str) -> None:
    """Drop a model's overrides (back to the file config); LookupError if it has none."""
    conn.execute("DELETE FROM model_settings WHERE model = ?", (model,))
    if conn.changes() == 0:
        raise LookupError(f"unknown model settings: {model}")
