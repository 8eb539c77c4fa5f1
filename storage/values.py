"""Typed reads of the values SQLite hands back: STRICT tables make a mismatch a bug, said loudly."""

from __future__ import annotations

__all__ = ["as_int", "as_opt_float", "as_opt_int"]


def as_int(value: object) -> int:
    """An INTEGER column's value."""
    if not isinstance(value, int):
        raise TypeError(f"expected an integer from the database, got {value!r}")
    return value


def as_opt_int(value: object) -> int | None:
    """An INTEGER or NULL."""
    return None if value is None else as_int(value)


def as_opt_float(value: object) -> float | None:
    """A REAL or NULL (a sum of REALs may come back INTEGER-valued, so ints are accepted)."""
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise TypeError(f"expected a number from the database, got {value!r}")
    return float(value)
