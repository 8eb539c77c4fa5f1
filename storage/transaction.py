"""Run a function inside one ``BEGIN IMMEDIATE`` transaction on a write connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import apsw

__all__ = ["in_immediate_transaction", "rollback_quietly"]

T = TypeVar("T")

logger = logging.getLogger("llm_proxy.storage")


def rollback_quietly(conn: apsw.Connection) -> None:
    """Roll back the open transaction, if any, without masking the error that got us here."""
    if not conn.in_transaction:
        # SQLite already rolled back on its own (e.g. after SQLITE_FULL).
        return
    try:
        conn.execute("ROLLBACK")
    except apsw.Error:
        logger.exception("rollback failed")


def in_immediate_transaction(
    conn: apsw.Connection, fn: Callable[[apsw.Connection], T], *, commit: bool = True
) -> T:
    """Run ``fn(conn)`` in its own IMMEDIATE transaction; commit (or roll back when ``commit`` is
    false) on success, roll back on any exception.

    Blocking: call it from the writer's thread.
    """
    # IMMEDIATE takes the write lock at BEGIN, where the busy timeout applies, instead of failing
    # with SQLITE_BUSY halfway through when a read lock cannot be upgraded.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        if conn.in_transaction:
            conn.execute("COMMIT" if commit else "ROLLBACK")
    except BaseException:
        rollback_quietly(conn)
        raise
    return result
