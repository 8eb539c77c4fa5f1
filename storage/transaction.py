"""Run a function inside one ``BEGIN IMMEDIATE`` transaction on a write connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import outcome

from storage.sql import DATABASE_ERRORS, Connection, is_postgres

__all__ = [
    "begin_statement",
    "in_immediate_transaction",
    "in_one_transaction_each_in_savepoint",
    "rollback_quietly",
]

T = TypeVar("T")

logger = logging.getLogger("llm_proxy.storage")


def rollback_quietly(conn: Connection) -> None:
    """Roll back the open transaction, if any, without masking the error that got us here."""
    if not conn.in_transaction:
        # SQLite already rolled back on its own (e.g. after SQLITE_FULL).
        return
    try:
        conn.execute("ROLLBACK")
    except DATABASE_ERRORS:
        logger.exception("rollback failed")


def begin_statement(conn: Connection) -> str:
    """``BEGIN IMMEDIATE`` on SQLite, plain ``BEGIN`` on PostgreSQL (whose writers do not queue
    for one lock)."""
    # IMMEDIATE takes the write lock at BEGIN, where the busy timeout applies, instead of failing
    # with SQLITE_BUSY halfway through when a read lock cannot be upgraded.
    return "BEGIN" if is_postgres(conn) else "BEGIN IMMEDIATE"


def in_immediate_transaction(
    conn: Connection, fn: Callable[[Connection], T], *, commit: bool = True
) -> T:
    """Run ``fn(conn)`` in its own IMMEDIATE transaction; commit (or roll back when ``commit`` is
    false) on success, roll back on any exception.

    Blocking: call it from the writer's thread.
    """
    conn.execute(begin_statement(conn))
    try:
        result = fn(conn)
        if conn.in_transaction:
            conn.execute("COMMIT" if commit else "ROLLBACK")
    except BaseException:
        rollback_quietly(conn)
        raise
    return result


class TransactionLost(Exception):
    """SQLite rolled the whole transaction back while a job ran (e.g. ``SQLITE_FULL``)."""


def _in_savepoint(conn: Connection, fn: Callable[[Connection], T]) -> T:
    conn.execute("SAVEPOINT job")
    try:
        result = fn(conn)
    except BaseException as exc:
        if not conn.in_transaction:
            # Nothing is left to roll back to, and the jobs before this one are gone too.
            raise TransactionLost(repr(exc)) from exc
        try:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        except DATABASE_ERRORS as undo_error:
            raise TransactionLost(repr(undo_error)) from exc
        raise
    conn.execute("RELEASE job")
    return result


def in_one_transaction_each_in_savepoint(
    conn: Connection, fns: list[Callable[[Connection], Any]]
) -> list[outcome.Outcome[Any]]:
    """Run each of ``fns`` in its own savepoint of one IMMEDIATE transaction, then commit once:
    a job's exception undoes that job alone and becomes its outcome.

    A group commit: jobs that queued up together cost one ``BEGIN``/``COMMIT`` (one WAL append
    of the commit frame) instead of one each. When the transaction itself fails (``BEGIN``,
    ``COMMIT``, or SQLite rolling it back under a job) every job's outcome is that error, as
    nothing of the group was kept. Blocking: call it from the writer's thread.
    """
    conn.execute(begin_statement(conn))
    try:
        results: list[outcome.Outcome[Any]] = []
        for fn in fns:
            result = outcome.capture(_in_savepoint, conn, fn)
            if isinstance(result, outcome.Error) and isinstance(result.error, TransactionLost):
                raise result.error
            results.append(result)
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise
    return results
