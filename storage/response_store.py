"""The store of responses ``/v1/responses`` keeps (``store`` not false), for trio callers.

Writes are jobs of the one StorageWriter, after every record queued before them; stores share
one commit with the others queued with them, each in its own savepoint. Reads run on the read
pool's threads. Nothing touches SQLite, or decodes stored JSON, on the trio thread. ``store``
returns once the row is committed, so a client that continues with ``previous_response_id``
right after its answer finds it, on any worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final, final

from storage.reads import ReadPool
from storage.responses import (
    ResponseToStore,
    StoredResponse,
    conversation_items,
    delete_response,
    get_response,
    insert_response,
)
from storage.retention import DAY_MS
from storage.writer import StorageWriter

__all__ = [
    "MAX_CONVERSATION_DEPTH",
    "MAX_ID_CHARS",
    "ResponseStore",
    "ResponseToStore",
    "StoredResponse",
]

MAX_CONVERSATION_DEPTH: Final = 1000
"""The most responses a ``previous_response_id`` chain may walk back through."""
MAX_ID_CHARS: Final = 128
ID_PREFIX: Final = "resp_"


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


@final
class ResponseStore:
    """Store, read, walk and delete stored responses, each visible only to its own client."""

    def __init__(
        self,
        writer: StorageWriter,
        reads: ReadPool,
        *,
        retention_days: int,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be positive, got {retention_days}")
        self._writer = writer
        self._reads = reads
        self._retention_ms = retention_days * DAY_MS
        self._clock_ms = clock_ms or _wall_clock_ms

    async def store(self, response: ResponseToStore, *, timeout_s: float = 10.0) -> None:
        """Keep ``response`` for the retention period; returns once it is committed.

        ``ValueError`` for an id that is not ``resp_…`` (at most 128 characters), one already
        stored, or a response naming itself as its previous one; ``TypeError`` for items that
        are not JSON; ``trio.TooSlowError`` when the writer did not get to it in ``timeout_s``.
        """
        if not response.id.startswith(ID_PREFIX) or len(response.id) <= len(ID_PREFIX):
            raise ValueError(f"a stored response's id must start with 'resp_', got {response.id!r}")
        if len(response.id) > MAX_ID_CHARS:
            raise ValueError(f"a stored response's id must have at most {MAX_ID_CHARS} characters")
        if response.previous_response_id == response.id:
            raise ValueError(f"response {response.id!r} cannot be its own previous response")
        now_ms = self._clock_ms()
        await self._writer.execute(
            partial(
                insert_response,
                response=response,
                created_at_ms=now_ms,
                expires_at_ms=now_ms + self._retention_ms,
            ),
            timeout_s=timeout_s,
            # Responses arrive many at a time under load: one commit for all that wait.
            shares_commit=True,
        )

    async def get(self, response_id: str, client_id: str | None) -> StoredResponse | None:
        """The client's response ``response_id``; None when absent, expired or another
        client's."""
        now_ms = self._clock_ms()
        return await self._reads.run(
            partial(
                get_response,
                response_id=response_id,
                client_id=client_id,
                now_ms=now_ms,
                cutoff_ms=now_ms - self._retention_ms,
            )
        )

    async def conversation(self, previous_response_id: str, client_id: str | None) -> list[Any]:
        """The input and output items of every response up to ``previous_response_id``, oldest
        first: what a continuation puts before its own input.

        Raises ``proxy.errors.InvalidRequest`` (400 naming ``previous_response_id``) when that
        response or an earlier one of its conversation is absent, expired or another client's
        (``previous_response_not_found``), when the chain loops
        (``previous_response_chain_broken``) or walks back past :data:`MAX_CONVERSATION_DEPTH`
        responses (``previous_response_chain_too_long``).
        """
        now_ms = self._clock_ms()
        return await self._reads.run(
            partial(
                conversation_items,
                response_id=previous_response_id,
                client_id=client_id,
                now_ms=now_ms,
                cutoff_ms=now_ms - self._retention_ms,
                max_depth=MAX_CONVERSATION_DEPTH,
            )
        )

    async def delete(self, response_id: str, client_id: str | None) -> bool:
        """Delete the client's response ``response_id``; False when there was none to delete
        (absent, expired or another client's)."""
        now_ms = self._clock_ms()
        deleted: bool = await self._writer.execute(
            partial(
                delete_response,
                response_id=response_id,
                client_id=client_id,
                now_ms=now_ms,
                cutoff_ms=now_ms - self._retention_ms,
            )
        )
        return deleted
