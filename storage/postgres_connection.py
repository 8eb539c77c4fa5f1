"""A psycopg connection that the storage layer's queries use as they use APSW's.

The queries are written once, with SQLite's ``?`` and ``:name`` placeholders; this turns them into
psycopg's ``%s`` and ``%(name)s`` (once per distinct statement). It runs in autocommit, so the
``BEGIN``/``COMMIT`` the storage layer issues are the transaction, as on SQLite; ``with conn:`` is a
savepoint. A connection the server dropped is opened again at the next statement outside a
transaction, so the writer and the read pool survive a restart of PostgreSQL without knowing it.
psycopg's exceptions become :mod:`storage.sql`'s, classed as "this row" or "the server". Numeric
sums come back as ``int`` or ``float``, as SQLite gives them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Final, final

import psycopg
import psycopg.pq
from psycopg.adapt import Loader
from psycopg.types.string import StrDumperUnknown

from storage.sql import DatabaseError, DatabaseUnavailable, Dialect, RowRejected

__all__ = ["PgConnection", "translate_error", "translated_sql"]

CONNECT_TIMEOUT_S: Final = 5
"""How long opening a connection may take before the server counts as unreachable."""

# A quoted string or identifier (skipped whole), a `::` cast (kept), a placeholder, or a `%`.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?(\d*)|:([A-Za-z_]\w*)|%")

# SQLSTATE classes: 22 data exception, 23 integrity constraint violation (the row's fault);
# 08 connection exception, 53 insufficient resources, 57 operator intervention (shutdown),
# 58 system error (the server's).
_ROW_CLASSES: Final = ("22", "23")
_SERVER_CLASSES: Final = ("08", "53", "57", "58")


@functools.lru_cache(maxsize=512)
def translated_sql(sql: str) -> tuple[str, tuple[int, ...] | None, bool]:
    """``sql`` with psycopg placeholders; the order of ``?N`` parameters (None: plain ``?``);
    whether it names its parameters."""
    order: list[int] = []
    numbered = False
    named = False
    plain = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal numbered, named, plain
        text = match.group(0)
        if text == "%":
            return "%%"
        if text.startswith("?"):
            if match.group(1):
                numbered = True
                order.append(int(match.group(1)) - 1)
            else:
                order.append(plain)
                plain += 1
            return "%s"
        if text.startswith(":") and text != "::":
            named = True
            return f"%({match.group(2)})s"
        return text  # a quoted literal or a cast

    out = _TOKENS.sub(replace, sql)
    return out, tuple(order) if numbered else None, named


def _bound(bindings: Any, order: tuple[int, ...] | None, named: bool) -> Any:
    if bindings is None or named:
        return bindings
    if order is None:
        return tuple(bindings)
    values = tuple(bindings)
    return tuple(values[i] for i in order)


def translate_error(exc: psycopg.Error) -> DatabaseError:
    """psycopg's error as the storage layer's: the row's fault, the server's, or another."""
    state = exc.sqlstate
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, psycopg.OperationalError) and state is None:
        return DatabaseUnavailable(message, state)  # no answer at all: connection refused, lost
    if (state is not None and state[:2] in _ROW_CLASSES) or (
        # psycopg's own refusal of a value it cannot send (no SQLSTATE: the server never saw it).
        state is None and isinstance(exc, psycopg.DataError | psycopg.IntegrityError)
    ):
        return RowRejected(message, state)
    if state is not None and state[:2] in _SERVER_CLASSES:
        return DatabaseUnavailable(message, state)
    return DatabaseError(message, state)


Buffer = bytes | bytearray | memoryview


class _NumericLoader(Loader):
    """``numeric`` (what ``sum()`` of integers gives) as ``int`` when whole, else ``float``."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        if "." in text or "e" in text or "N" in text or "I" in text:
            return float(text)
        return int(text)


class _NulSafeStrDumper(StrDumperUnknown):
    """``str`` with each NUL as U+FFFD: PostgreSQL's text cannot hold NUL (SQLite's can), and a
    NUL in an upstream's error message must not make its log record unstorable."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)


@final
class PgConnection:
    """One PostgreSQL session, used by one thread at a time (the writer's, or a read's)."""

    dialect: Final[Dialect] = "postgresql"

    def __init__(self, conninfo: str, *, readonly: bool = False) -> None:
        """Connect now (raising :class:`DatabaseUnavailable` when the server cannot be reached).

        Blocking: call it from a worker thread."""
        self._conninfo = conninfo
        self._readonly = readonly
        self._rowcount = 0
        self._savepoints = 0
        self._raw = self._connect()

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        options = "-c default_transaction_read_only=on" if self._readonly else None
        try:
            raw = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="llm-proxy",
                options=options,
            )
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        raw.adapters.register_loader("numeric", _NumericLoader)
        raw.adapters.register_dumper(str, _NulSafeStrDumper)
        return raw

    @property
    def raw(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The psycopg connection, for what only PostgreSQL does (migrations, COPY)."""
        self._reconnect_if_lost()
        return self._raw

    @property
    def in_transaction(self) -> bool:
        status = self._raw.info.transaction_status
        return status in (
            psycopg.pq.TransactionStatus.INTRANS,
            psycopg.pq.TransactionStatus.INERROR,
        )

    def _reconnect_if_lost(self) -> None:
        # Only between transactions: inside one, the caller must see that its work is gone.
        if self._raw.broken or self._raw.closed:
            self._raw.close()
            self._raw = self._connect()

    def execute(self, statements: str, bindings: Any = None, /) -> psycopg.Cursor[tuple[Any, ...]]:
        """Run one statement with SQLite-style placeholders; its cursor holds the rows."""
        if not self.in_transaction:
            self._reconnect_if_lost()
        sql, order, named = translated_sql(statements)
        try:
            cursor = self._raw.execute(sql.encode(), _bound(bindings, order, named))
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        self._rowcount = max(cursor.rowcount, 0)
        return cursor

    def executemany(self, statements: str, sequenceofbindings: Iterable[Any], /) -> None:
        """Run one statement once per set of bindings (one round trip: psycopg pipelines them)."""
        if not self.in_transaction:
            self._reconnect_if_lost()
        sql, order, named = translated_sql(statements)
        rows = [_bound(bindings, order, named) for bindings in sequenceofbindings]
        if not rows:
            self._rowcount = 0
            return
        try:
            with self._raw.cursor() as cursor:
                cursor.executemany(sql.encode(), rows)
                self._rowcount = max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            raise translate_error(exc) from exc

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """``COPY table (columns) FROM STDIN`` the rows: the fastest bulk insert there is."""
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        try:
            with self._raw.cursor() as cursor, cursor.copy(statement.encode()) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise translate_error(exc) from exc

    def changes(self) -> int:
        """Rows changed by the last statement."""
        return self._rowcount

    def close(self) -> None:
        self._raw.close()

    # A savepoint, as ``with conn:`` is on APSW: the block's changes are undone if it raises.
    def __enter__(self) -> PgConnection:
        self._savepoints += 1
        self.execute(f"SAVEPOINT llm_proxy_{self._savepoints}")
        return self

    def __exit__(
        self,
        etype: type[BaseException] | None,
        evalue: BaseException | None,
        etb: TracebackType | None,
        /,
    ) -> None:
        name = f"llm_proxy_{self._savepoints}"
        self._savepoints -= 1
        if etype is None:
            self.execute(f"RELEASE SAVEPOINT {name}")
        elif self.in_transaction and not self._raw.broken:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
