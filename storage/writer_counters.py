"""The StorageWriter's running counts of its work, kept on the trio thread."""

from __future__ import annotations

import dataclasses

__all__ = ["WriterCounters"]


@dataclasses.dataclass(slots=True)
class WriterCounters:
    """What the writer has stored, refused and spent since start (see ``WriterStatistics``)."""

    rows_written: int = 0
    rows_rejected: int = 0
    batches: int = 0
    last_batch_rows: int = 0
    last_flush_ms: float = 0.0
    max_flush_ms: float = 0.0
    flush_ms_total: float = 0.0
    write_errors: int = 0
    checkpoints: int = 0

    def write_failed(self) -> None:
        """Count a failed attempt at a transaction (it is retried)."""
        self.write_errors += 1

    def checkpointed(self) -> None:
        """Count a WAL checkpoint done."""
        self.checkpoints += 1

    def batch_stored(self, rows: int, rejected: int, elapsed_ms: float) -> None:
        """Count a batch of ``rows`` records stored in ``elapsed_ms``, ``rejected`` of them
        refused by the database."""
        self.rows_rejected += rejected
        self.rows_written += rows - rejected
        self.batches += 1
        self.last_batch_rows = rows
        self.last_flush_ms = elapsed_ms
        self.max_flush_ms = max(self.max_flush_ms, elapsed_ms)
        self.flush_ms_total += elapsed_ms
