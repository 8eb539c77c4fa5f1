"""Open APSW connections configured the one way this project uses SQLite."""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path

import apsw
import apsw.bestpractice

__all__ = ["JOURNAL_SIZE_LIMIT_BYTES", "create_private_file", "database_files", "open_connection"]

JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
_SQLITE_HEADER = b"SQLite format 3\x00"

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


def _apply_best_practice() -> None:
    """Install APSW's recommended connection hooks once per process."""
    global _best_practice_applied
    # apply() appends a hook on every call: without the guard each call would run them again.
    with _best_practice_lock:
        if not _best_practice_applied:
            apsw.bestpractice.apply(apsw.bestpractice.recommended)
            # APSW forwards SQLite's own log to the root logger.
            logging.getLogger().addFilter(_SchemaChangeNotice())
            _best_practice_applied = True


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
    path: str, *, readonly: bool = False, busy_timeout_ms: int = 5000
) -> apsw.Connection:
    """Open ``path`` in WAL mode with foreign keys, a busy timeout and a bounded WAL file.

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
    conn = apsw.Connection(path, flags=flags)
    try:
        # The best-practice hook sets 100 ms, too short for a writer that holds locks for a batch.
        conn.set_busy_timeout(busy_timeout_ms)
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
