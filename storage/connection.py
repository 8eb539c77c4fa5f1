"""Open APSW connections configured the one way this project uses SQLite."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

import apsw
import apsw.bestpractice

__all__ = [
    "JOURNAL_SIZE_LIMIT_BYTES",
    "BusyWaitStatistics",
    "BusyWaits",
    "create_private_file",
    "database_files",
    "open_connection",
]

JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
_SQLITE_HEADER = b"SQLite format 3\x00"

OPENING_BUSY_TIMEOUT_MS: Final = 10_000
"""How long opening a connection waits for another process that holds the lock (a migration, the
switch of a new file to WAL)."""

# SQLite's own schedule (sqliteDefaultBusyCallback), in seconds: short sleeps first, as most
# locks are held for one small transaction.
_BUSY_DELAYS_S: Final = (0.001, 0.002, 0.005, 0.010, 0.015, 0.020, 0.025, 0.025, 0.025, 0.050)
_BUSY_DELAY_MAX_S: Final = 0.100

_best_practice_lock = threading.Lock()
_best_practice_applied = False


class _SchemaChangeNotice(logging.Filter):
    """Drops SQLite's notice that a statement was re-prepared after a schema change.

    Another connection (the CLI's ``PRAGMA optimize`` on close, say) changing the schema makes
    every cached statement here log SQLITE_SCHEMA once, with its whole SQL, before SQLite retries
    it by itself: nothing failed, so nothing is worth a log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "(17) SQLITE_SCHEMA" not in record.getMessage()


def connection_busy_timeout_while_opening(connection: apsw.Connection) -> None:
    """A busy timeout long enough for the WAL switch that the next hook makes.

    APSW's own 100 ms is too short when several processes open a new database file at once: the
    first switches it to WAL (an exclusive lock) and migrates it, and the others must wait for
    that instead of failing to start with "database is locked".
    """
    connection.set_busy_timeout(OPENING_BUSY_TIMEOUT_MS)


def _recommended_hooks() -> tuple[Callable[..., object], ...]:
    """APSW's recommended hooks, with our busy timeout in place of its 100 ms one."""
    return tuple(
        connection_busy_timeout_while_opening
        if hook is apsw.bestpractice.connection_busy_timeout
        else hook
        for hook in apsw.bestpractice.recommended
    )


def _apply_best_practice() -> None:
    """Install APSW's recommended connection hooks once per process."""
    global _best_practice_applied
    # apply() appends a hook on every call: without the guard each call would run them again.
    with _best_practice_lock:
        if not _best_practice_applied:
            apsw.bestpractice.apply(_recommended_hooks())
            # APSW forwards SQLite's own log to the root logger.
            logging.getLogger().addFilter(_SchemaChangeNotice())
            _best_practice_applied = True


@dataclass(frozen=True, slots=True)
class BusyWaitStatistics:
    """How often connections waited for another process's lock, and how long."""

    waits: int
    """Lock waits begun (SQLITE_BUSY met, then retried)."""
    timeouts: int
    """Waits that reached their bound: the statement failed with ``apsw.BusyError``."""
    waited_s: float
    """Time spent sleeping in those waits."""


@final
class BusyWaits:
    """Bounded, counted waits for a lock another connection (another process) holds.

    Several gateway processes share one SQLite file: each one's writer may find the write lock
    taken by another's batch. SQLite's plain busy timeout waits silently; this handler waits on
    the same schedule up to the same bound, and counts, so ``/metrics`` shows contention.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits = 0
        self._timeouts = 0
        self._waited_s = 0.0

    def handler(self, timeout_ms: int) -> Callable[[int], bool]:
        """A busy handler for one connection (``Connection.set_busy_handler``)."""
        bound_s = timeout_ms / 1000
        began = 0.0

        def wait(prior_calls: int) -> bool:
            nonlocal began
            now = time.monotonic()
            if prior_calls == 0:
                began = now
                with self._lock:
                    self._waits += 1
            remaining = bound_s - (now - began)
            if remaining <= 0:
                with self._lock:
                    self._timeouts += 1
                return False
            scheduled = (
                _BUSY_DELAYS_S[prior_calls]
                if prior_calls < len(_BUSY_DELAYS_S)
                else _BUSY_DELAY_MAX_S
            )
            delay = min(scheduled, remaining)
            time.sleep(delay)
            with self._lock:
                self._waited_s += delay
            return True

        return wait

    def statistics(self) -> BusyWaitStatistics:
        """The counters so far."""
        with self._lock:
            return BusyWaitStatistics(self._waits, self._timeouts, self._waited_s)


def database_files(path: str) -> list[Path]:
    """The database file SQLite uses for ``path`` (links resolved) and its ``-wal`` and ``-shm``."""
    real = Path(os.path.realpath(path))
    return [real, real.with_name(real.name + "-wal"), real.with_name(real.name + "-shm")]


def create_private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600, whatever the umask; FileExistsError if anything is
    there already, a symbolic link included (it is never followed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode given to open() is filtered by the umask
    finally:
        os.close(fd)
    return path


def _prepare_file(path: str) -> None:
    """Create the database file private to its owner, or check that the one there is usable.

    SQLite would create it with mode 0644 (less the umask) and, since its -wal and -shm copy the
    database's mode, so would they be: readable by every local user. The checks name each reason
    SQLite would report only as "unable to open database file" (plus a few log lines).
    """
    try:
        create_private_file(Path(path))
    except FileExistsError:
        pass
    except OSError as exc:
        raise apsw.CantOpenError(_create_failure(path, exc)) from exc
    else:
        return
    try:
        # Not O_NOFOLLOW here: a database the operator linked elsewhere is theirs to place.
        with open(path, "rb") as existing:
            header = existing.read(len(_SQLITE_HEADER))
    except IsADirectoryError as exc:
        raise apsw.CantOpenError("it is a directory") from exc
    except OSError as exc:
        raise apsw.CantOpenError(exc.strerror or str(exc)) from exc
    if header and header != _SQLITE_HEADER[: len(header)]:
        raise apsw.NotADBError("it is not a SQLite database (the file does not start like one)")
    if not os.access(path, os.R_OK | os.W_OK):
        raise apsw.CantOpenError("this user may not write it (permission denied)")
    wal, parent = Path(f"{path}-wal"), Path(path).absolute().parent
    if not wal.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise apsw.CantOpenError(
            f"this user may not create files in {parent}, where SQLite keeps {wal.name}"
        )


def _create_failure(path: str, exc: OSError) -> str:
    parent = Path(path).absolute().parent
    if exc.errno == errno.ENOENT:
        return f"the directory {parent} does not exist"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"this user may not create files in {parent} (permission denied)"
    return f"cannot create it: {exc.strerror or exc}"


def open_connection(
    path: str,
    *,
    readonly: bool = False,
    busy_timeout_ms: int = 5000,
    busy_waits: BusyWaits | None = None,
) -> apsw.Connection:
    """Open ``path`` in WAL mode with foreign keys, a busy timeout and a bounded WAL file.

    With ``busy_waits`` the lock waits are counted there (each still bounded by
    ``busy_timeout_ms``).

    For writing, a new database file is created with mode 0600, and an existing one that
    cannot be used raises ``apsw.CantOpenError``/``NotADBError`` saying why. Blocking: call it
    from a worker thread, never from the trio thread.
    """
    _apply_best_practice()
    if readonly:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
        if path != ":memory:" and not path.startswith("file:"):
            _prepare_file(path)
    deadline = time.monotonic() + OPENING_BUSY_TIMEOUT_MS / 1000
    delay = _BUSY_DELAYS_S[0]
    while True:
        try:
            return _open_configured(path, flags, readonly, busy_timeout_ms, busy_waits)
        except apsw.BusyError:
            # SQLite answers BUSY at once, without its busy handler, where waiting could deadlock
            # (several processes opening a new file: one switching it to WAL, another reading
            # it); its advice is to let go of every lock and start over, which this does.
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, _BUSY_DELAY_MAX_S)


def _open_configured(
    path: str, flags: int, readonly: bool, busy_timeout_ms: int, busy_waits: BusyWaits | None
) -> apsw.Connection:
    """One attempt of :func:`open_connection`: the connection, configured, or an exception (the
    half-open connection closed)."""
    conn = apsw.Connection(path, flags=flags)
    try:
        # The best-practice hook sets 100 ms, too short for a writer that holds locks for a batch.
        if busy_waits is None:
            conn.set_busy_timeout(busy_timeout_ms)
        else:
            conn.set_busy_handler(busy_waits.handler(busy_timeout_ms))
        conn.pragma("foreign_keys", True)
        if not readonly:
            mode = conn.pragma("journal_mode", "wal")
            if str(mode).lower() != "wal":
                raise apsw.CantOpenError(f"{path}: cannot switch to WAL (journal_mode={mode})")
            # In WAL mode NORMAL survives application crashes and saves an fsync per commit.
            conn.pragma("synchronous", "NORMAL")
            conn.pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
    except BaseException:
        conn.close()
        raise
    return conn
