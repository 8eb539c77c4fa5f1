"""Stored responses (``stored_responses``): plain functions of a connection, for the writer's jobs
and the read pool.

A response belongs to one client: every read and delete names the client and the row must match,
so another client's id reads as absent. A row is visible until ``expires_at`` (set when stored)
and while it is younger than the retention configured now (``cutoff_ms``), so lowering
``[responses] retention_days`` hides older rows at once; retention then deletes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from proxy.errors import InvalidRequest
from storage.sql import Connection

__all__ = [
    "ANONYMOUS",
    "ResponseToStore",
    "StoredResponse",
    "conversation_items",
    "delete_expired_responses",
    "delete_response",
    "get_response",
    "insert_response",
    "output_of",
]

ANONYMOUS: Final = ""
"""The ``client_id`` column of an anonymous caller's responses (they share one namespace)."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseToStore:
    """A finished response to keep: its request's input items (a string input already made one
    user ``message`` item, JSON-able, not to change until ``store`` returns) and the response
    object as the JSON the client got (its ``output`` holds the output items)."""

    id: str
    client_id: str | None
    """The caller's client (None: anonymous), the same identity the request log keys by."""
    model: str
    provider: str
    previous_response_id: str | None
    input_items: Sequence[Any]
    response_json: bytes
    """Kept as sent: a passed-through answer is stored as the upstream's bytes, unparsed."""
    upstream_held: bool = False
    """Whether the provider holds it too: it was passed through to a provider that stores
    responses, which can continue it by its id."""


class _Output(msgspec.Struct):
    """The output items of a response object; its other fields are skipped unread."""

    output: list[Any] = msgspec.field(default_factory=list)


_decode_output = msgspec.json.Decoder(_Output).decode


def output_of(response_json: str | bytes) -> list[Any]:
    """The output items of a stored response object (none when it has no list of them)."""
    try:
        return _decode_output(response_json).output
    except msgspec.ValidationError:
        return []


@dataclasses.dataclass(frozen=True, slots=True)
class StoredResponse:
    """A stored response as read back; the JSON stays text until a method decodes it."""

    id: str
    client_id: str | None
    created_at_ms: int
    expires_at_ms: int
    model: str
    provider: str
    previous_response_id: str | None
    response_json: str
    """The response object exactly as stored, fit to send as a body without re-encoding."""
    input_items_json: str
    upstream_held: bool = False

    def response(self) -> dict[str, Any]:
        """The response object, decoded."""
        decoded: dict[str, Any] = _decode(self.response_json)
        return decoded

    def input_items(self) -> list[Any]:
        """The request's input items, decoded."""
        decoded: list[Any] = _decode(self.input_items_json)
        return decoded

    def output_items(self) -> list[Any]:
        """The response's output items, decoded."""
        return output_of(self.response_json)


def _client_key(client_id: str | None) -> str:
    return ANONYMOUS if client_id is None else client_id


_INSERT = """
INSERT INTO stored_responses (
    id, client_id, created_at, expires_at, model, provider, previous_response_id, input_items,
    response, upstream_held
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING
"""


def insert_response(
    conn: Connection, response: ResponseToStore, *, created_at_ms: int, expires_at_ms: int
) -> None:
    """Store ``response`` (encoding its input items here, on the writer's thread);
    ``ValueError`` when its id is taken, ``UnicodeDecodeError`` when its JSON is not UTF-8.
    Blocking."""
    conn.execute(
        _INSERT,
        (
            response.id,
            _client_key(response.client_id),
            created_at_ms,
            expires_at_ms,
            response.model,
            response.provider,
            response.previous_response_id,
            # Bound as text: SQLite would read a BLOB as its binary JSONB format.
            _encode(response.input_items).decode(),
            response.response_json.decode(),
            int(response.upstream_held),
        ),
    )
    if conn.changes() == 0:
        raise ValueError(f"a response with id {response.id!r} is already stored")


_VISIBLE = "client_id = :client AND expires_at > :now AND created_at > :cutoff"


def _visible_params(client_id: str | None, now_ms: int, cutoff_ms: int) -> dict[str, object]:
    return {"client": _client_key(client_id), "now": now_ms, "cutoff": cutoff_ms}


def get_response(
    conn: Connection, response_id: str, client_id: str | None, *, now_ms: int, cutoff_ms: int
) -> StoredResponse | None:
    """The client's response ``response_id``; None when absent, expired or another client's."""
    rows = conn.execute(
        "SELECT id, client_id, created_at, expires_at, model, provider, previous_response_id,"
        " response, input_items, upstream_held FROM stored_responses"
        f" WHERE id = :id AND {_VISIBLE}",
        {"id": response_id, **_visible_params(client_id, now_ms, cutoff_ms)},
    ).fetchall()
    if not rows:
        return None
    (rid, client, created, expires, model, provider, previous, response, inputs, held) = rows[0]
    # STRICT INTEGER columns
    assert isinstance(created, int)
    assert isinstance(expires, int)
    return StoredResponse(
        id=str(rid),
        client_id=None if client == ANONYMOUS else str(client),
        created_at_ms=created,
        expires_at_ms=expires,
        model=str(model),
        provider=str(provider),
        previous_response_id=None if previous is None else str(previous),
        response_json=str(response),
        input_items_json=str(inputs),
        upstream_held=held == 1,
    )


def _chain_error(message: str, code: str) -> InvalidRequest:
    return InvalidRequest(message, param="previous_response_id", code=code)


def conversation_items(
    conn: Connection,
    response_id: str,
    client_id: str | None,
    *,
    now_ms: int,
    cutoff_ms: int,
    max_depth: int,
) -> list[Any]:
    """Every input and output item of the conversation that ends with ``response_id``, oldest
    response first, each response's input before its output: what a continuation replays.

    Walks ``previous_response_id`` back one primary-key look-up per response, at most
    ``max_depth`` of them. Raises ``InvalidRequest`` (400, ``param`` previous_response_id) when
    ``response_id`` or an earlier response is absent, expired or another client's, when the
    chain loops, or when it is longer than ``max_depth``. Blocking.
    """
    params = _visible_params(client_id, now_ms, cutoff_ms)
    texts: list[tuple[str, str]] = []
    seen: set[str] = set()
    current: str | None = response_id
    while current is not None:
        if current in seen:
            raise _chain_error(
                f"Previous response with id '{response_id}' cannot be continued: its"
                f" conversation loops back to '{current}'.",
                "previous_response_chain_broken",
            )
        if len(seen) == max_depth:
            raise _chain_error(
                f"Previous response with id '{response_id}' cannot be continued: its"
                f" conversation has more than {max_depth} responses. Start a new one with the"
                " whole history as input.",
                "previous_response_chain_too_long",
            )
        seen.add(current)
        rows = conn.execute(
            "SELECT previous_response_id, input_items, response FROM stored_responses"
            f" WHERE id = :id AND {_VISIBLE}",
            {"id": current, **params},
        ).fetchall()
        if not rows:
            if current == response_id:
                message = f"Previous response with id '{response_id}' not found."
            else:
                message = (
                    f"Previous response with id '{response_id}' cannot be continued: the earlier"
                    f" response '{current}' of its conversation was not found (deleted or"
                    " expired)."
                )
            raise _chain_error(message, "previous_response_not_found")
        previous, inputs, response = rows[0]
        texts.append((str(inputs), str(response)))
        current = None if previous is None else str(previous)
    items: list[Any] = []
    for inputs, response in reversed(texts):
        items += _decode(inputs)
        items += output_of(response)
    return items


def delete_response(
    conn: Connection, response_id: str, client_id: str | None, *, now_ms: int, cutoff_ms: int
) -> bool:
    """Delete the client's response ``response_id``; whether there was one to delete (an expired
    one counts as gone: retention removes it). Blocking."""
    conn.execute(
        f"DELETE FROM stored_responses WHERE id = :id AND {_VISIBLE}",
        {"id": response_id, **_visible_params(client_id, now_ms, cutoff_ms)},
    )
    return conn.changes() > 0


# Two index look-ups (expires_at, created_at) OR-ed; the primary key deletes.
_DELETE_EXPIRED = """
DELETE FROM stored_responses WHERE id IN (
    SELECT id FROM stored_responses WHERE expires_at <= :now OR created_at <= :cutoff LIMIT :limit
)
"""


def delete_expired_responses(conn: Connection, *, now_ms: int, cutoff_ms: int, limit: int) -> int:
    """Delete at most ``limit`` responses past their expiry or created at or before
    ``cutoff_ms``; return how many (fewer than ``limit``: none are left). Blocking."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    conn.execute(_DELETE_EXPIRED, {"now": now_ms, "cutoff": cutoff_ms, "limit": limit})
    return conn.changes()
