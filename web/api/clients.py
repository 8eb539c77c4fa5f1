"""``/api/clients``: API clients, their keys (plain once, masked after) and their usage."""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from typing import Annotated

import msgspec
from msgspec import UNSET, UnsetType
from quart import Blueprint, Response

from actors.budget_keeper import BudgetKeeper
from actors.client_directory import ClientDirectory
from proxy.errors import GatewayError, InvalidRequest, NotFound
from storage.analytics.aggregates import breakdown, summary
from storage.analytics.usage_filter import UsageFilter
from storage.budgets import set_client_budget
from storage.clients import (
    UNCHANGED,
    ClientRow,
    TokenRow,
    add_key,
    create_client,
    delete_client,
    get_client,
    list_clients,
    list_keys,
    revoke_key,
    update_client,
)
from storage.queries import ClientUsage, client_usage
from storage.reads import ReadPool
from storage.sql import Connection
from storage.writer import StorageWriter
from web.api.common import (
    DAY_MS,
    AuditLog,
    deps_of,
    json_response,
    now_ms,
    query_range,
    read_body,
)

log = logging.getLogger("llm_proxy.api")

clients = Blueprint("api_clients", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class ClientsApi:
    """What ``/api/clients`` uses."""

    reads: ReadPool
    writer: StorageWriter
    directory: ClientDirectory  # refreshed after a key change, so /v1 sees it at once
    audit: AuditLog
    default_requests_per_minute: int  # [limits] default_client_requests_per_minute
    budgets: BudgetKeeper | None = None  # each client's spend against its budgets


def _deps() -> ClientsApi:
    return deps_of(ClientsApi)


# Beyond SQLite's 64-bit integers a value would fail in the database rather than here.
Limit = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]


class _NotThisClientsKey(LookupError):
    """The key exists but belongs to another client: as unknown as a key that does not exist."""


class NewClientBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    description: str = ""
    rate_limit_per_minute: Limit | None = None
    """None: the configured default; 0: unlimited."""
    tokens_per_minute: Limit | None = None
    key_name: str = ""
    """A label for the first key."""
    budget_day_usd: float | None = None
    """USD per UTC day; null or 0: none."""
    budget_month_usd: float | None = None
    """USD per UTC calendar month; null or 0: none."""
    budget_warn_percent: int = 80


class ClientChangesBody(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields sent change; ``null`` for a limit means "back to the default"."""

    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    is_active: bool | UnsetType = UNSET
    rate_limit_per_minute: Limit | UnsetType | None = UNSET
    tokens_per_minute: Limit | UnsetType | None = UNSET
    budget_day_usd: float | UnsetType | None = UNSET
    budget_month_usd: float | UnsetType | None = UNSET
    budget_warn_percent: int | UnsetType = UNSET


class NewKeyBody(msgspec.Struct, forbid_unknown_fields=True):
    name: str = ""


# -- shapes ----------------------------------------------------------------------------------------


def _usage_json(usage: ClientUsage | None) -> dict[str, object]:
    if usage is None:
        return {
            "requests": 0,
            "errors": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": None,
            "last_call_ms": None,
        }
    return {
        "requests": usage.requests,
        "errors": usage.errors,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": usage.cost_usd,
        "last_call_ms": usage.last_call_ms,
    }


def client_json(client: ClientRow) -> dict[str, object]:
    """A client as the API shows it, with the limit that applies when it has none of its own."""
    default_rpm = _deps().default_requests_per_minute
    rpm = client.rate_limit_per_minute
    return {
        "id": client.id,
        "name": client.name,
        "description": client.description,
        "is_active": client.is_active,
        "rate_limit_per_minute": rpm,
        "effective_rate_limit_per_minute": default_rpm if rpm is None else rpm,
        "tokens_per_minute": client.tokens_per_minute,
        "created_at": client.created_at,
        "updated_at": client.updated_at,
        "key_count": client.key_count,
        "last_used_at": client.last_used_at,
        "budget_day_usd": client.budget_day_usd,
        "budget_month_usd": client.budget_month_usd,
        "budget_warn_percent": client.budget_warn_percent,
        "spend": _spend_json(client.id),
    }


_NO_SPEND: dict[str, object] = {
    "day_usd": 0.0,
    "month_usd": 0.0,
    "day_unpriced_calls": 0,
    "month_unpriced_calls": 0,
    "day_resets_at_ms": 0,
    "month_resets_at_ms": 0,
    "state": "ok",
}


def _spend_json(client_id: str) -> dict[str, object]:
    """What the client spent this UTC day and month, as the budget keeper counts it."""
    keeper = _deps().budgets
    return keeper.spend("client", client_id) if keeper is not None else dict(_NO_SPEND)


def _budget_changes(body: NewClientBody | ClientChangesBody) -> dict[str, object]:
    """The budget fields the body sets (``...``-free), by ``set_client_budget``'s names."""
    fields = {
        "day_usd": body.budget_day_usd,
        "month_usd": body.budget_month_usd,
        "warn_percent": body.budget_warn_percent,
    }
    return {name: value for name, value in fields.items() if value is not UNSET}


def _with_budget(
    conn: Connection, job: partial[ClientRow], budget: dict[str, object], now: int
) -> ClientRow:
    """Run ``job`` (a client write), then set the client's budgets in the same transaction."""
    client = job(conn)
    if budget:
        set_client_budget(conn, client.id, now_ms=now, **budget)
        return get_client(conn, client.id)
    return client


def token_json(token: TokenRow) -> dict[str, object]:
    """A key as listed: masked, never the plain key (it is not stored anyway)."""
    return {
        "id": token.id,
        "client_id": token.client_id,
        "masked": token.masked,
        "name": token.name,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "revoked": token.revoked,
    }


# -- helpers ---------------------------------------------------------------------------------------


def _field_of(exc: ValueError) -> str | None:
    """The field a validation message starts with (``budget_day_usd must …``), if any."""
    first = str(exc).split(" ", 1)[0]
    return first if first.startswith("budget_") else None


def _not_found(client_id: str) -> GatewayError:
    return NotFound(f"No client with id {client_id!r}.", code="client_not_found")


async def _refresh_keys() -> None:
    """Make a key change effective for ``/v1`` now rather than at the directory's next poll
    (and a budget change, rather than at the budget keeper's)."""
    deps = _deps()
    try:
        await deps.directory.refresh()
        if deps.budgets is not None:
            await deps.budgets.refresh()
    except Exception:
        # The change is stored; the directory's own poll picks it up within a second.
        log.warning("client directory refresh failed after a change", exc_info=True)


def _list_with_usage(
    conn: Connection, *, since_ms: int, until_ms: int
) -> tuple[list[ClientRow], dict[str, ClientUsage]]:
    rows = list_clients(conn)
    usage = client_usage(conn, since_ms, until_ms)
    return rows, {entry.client_id: entry for entry in usage if entry.client_id is not None}


def _revoke_client_key(conn: Connection, client_id: str, token_id: int, *, now_ms: int) -> TokenRow:
    """Revoke ``token_id`` if it belongs to ``client_id``; LookupError otherwise."""
    if not any(token.id == token_id for token in list_keys(conn, client_id)):
        raise _NotThisClientsKey(token_id)
    return revoke_key(conn, token_id, now_ms=now_ms)


def _client_usage(
    conn: Connection, client_id: str, *, since_ms: int, until_ms: int
) -> dict[str, object]:
    get_client(conn, client_id)  # LookupError when unknown
    only = UsageFilter(client_id=client_id)
    totals = summary(conn, since_ms, until_ms, only)
    models = breakdown(conn, "model", since_ms, until_ms, only)
    return {
        "client_id": client_id,
        **totals.to_json(),
        "models": [row.to_json() for row in models],
    }


# -- clients ---------------------------------------------------------------------------------------


@clients.get("/clients")
async def list_all() -> Response:
    until = now_ms()
    rows, usage = await _deps().reads.run(
        partial(_list_with_usage, since_ms=until - DAY_MS, until_ms=until)
    )
    data = [{**client_json(row), "usage_24h": _usage_json(usage.get(row.id))} for row in rows]
    return json_response({"data": data})


@clients.post("/clients")
async def create() -> Response:
    body = await read_body(NewClientBody)
    budget = _budget_changes(body)
    now = now_ms()

    def create_with_budget(conn: Connection) -> tuple[ClientRow, TokenRow, str]:
        client, token, plain = create_client(
            conn,
            name=body.name,
            description=body.description,
            rate_limit_per_minute=body.rate_limit_per_minute,
            tokens_per_minute=body.tokens_per_minute,
            key_name=body.key_name,
            now_ms=now,
        )
        set_client_budget(conn, client.id, now_ms=now, **budget)
        return get_client(conn, client.id), token, plain

    try:
        client, token, plain = await _deps().writer.execute(create_with_budget)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid client: {exc}.", param=_field_of(exc)) from None
    await _refresh_keys()
    await _deps().audit.record(
        "client.create",
        client.id,
        {
            "name": client.name,
            "rate_limit_per_minute": client.rate_limit_per_minute,
            "tokens_per_minute": client.tokens_per_minute,
            "budget_day_usd": client.budget_day_usd,
            "budget_month_usd": client.budget_month_usd,
            "budget_warn_percent": client.budget_warn_percent,
            "token_id": token.id,
            "masked": token.masked,
        },
    )
    # The plain key is returned this once: only its digest is stored.
    return json_response({**client_json(client), "token": plain, "key": token_json(token)}, 201)


@clients.get("/clients/<client_id>")
async def show(client_id: str) -> Response:
    try:
        client = await _deps().reads.run(partial(get_client, client_id=client_id))
    except LookupError:
        raise _not_found(client_id) from None
    return json_response(client_json(client))


@clients.put("/clients/<client_id>")
@clients.patch("/clients/<client_id>")
async def change(client_id: str) -> Response:
    body = await read_body(ClientChangesBody)
    sent = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not UNSET}
    try:
        client = await _deps().writer.execute(
            partial(
                _with_budget,
                budget=_budget_changes(body),
                now=now_ms(),
                job=partial(
                    update_client,
                    client_id=client_id,
                    now_ms=now_ms(),
                    name=None if body.name is UNSET else body.name,
                    description=None if body.description is UNSET else body.description,
                    is_active=None if body.is_active is UNSET else body.is_active,
                    rate_limit_per_minute=(
                        UNCHANGED
                        if body.rate_limit_per_minute is UNSET
                        else body.rate_limit_per_minute
                    ),
                    tokens_per_minute=(
                        UNCHANGED if body.tokens_per_minute is UNSET else body.tokens_per_minute
                    ),
                ),
            )
        )
    except LookupError:
        raise _not_found(client_id) from None
    except ValueError as exc:
        raise InvalidRequest(f"Invalid change: {exc}.", param=_field_of(exc)) from None
    if sent:
        await _refresh_keys()
        await _deps().audit.record("client.update", client.id, sent)
    return json_response(client_json(client))


@clients.delete("/clients/<client_id>")
async def remove(client_id: str) -> Response:
    try:
        await _deps().writer.execute(partial(delete_client, client_id=client_id))
    except LookupError:
        raise _not_found(client_id) from None
    await _refresh_keys()
    await _deps().audit.record("client.delete", client_id)
    return json_response({"status": "deleted", "id": client_id})


@clients.get("/clients/<client_id>/usage")
async def usage(client_id: str) -> Response:
    since, until = query_range()
    try:
        totals = await _deps().reads.run(
            partial(_client_usage, client_id=client_id, since_ms=since, until_ms=until)
        )
    except LookupError:
        raise _not_found(client_id) from None
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return json_response(totals)


# -- keys ------------------------------------------------------------------------------------------


@clients.get("/clients/<client_id>/tokens")
async def tokens(client_id: str) -> Response:
    try:
        rows = await _deps().reads.run(partial(list_keys, client_id=client_id))
    except LookupError:
        raise _not_found(client_id) from None
    return json_response({"data": [token_json(row) for row in rows]})


@clients.post("/clients/<client_id>/tokens")
async def new_token(client_id: str) -> Response:
    body = await read_body(NewKeyBody)
    try:
        token, plain = await _deps().writer.execute(
            partial(add_key, client_id=client_id, name=body.name, now_ms=now_ms())
        )
    except LookupError:
        raise _not_found(client_id) from None
    except ValueError as exc:
        raise InvalidRequest(f"Invalid key: {exc}.") from None
    await _refresh_keys()
    await _deps().audit.record(
        "client.token.create", client_id, {"token_id": token.id, "masked": token.masked}
    )
    # The plain key is returned this once: only its digest is stored.
    return json_response({**token_json(token), "token": plain}, 201)


@clients.delete("/clients/<client_id>/tokens/<token_id>")
async def revoke_token(client_id: str, token_id: str) -> Response:
    # Ids are 64-bit integers (SQLite rowids, PostgreSQL bigint identities): anything else names
    # no key.
    if not (token_id.isascii() and token_id.isdigit() and len(token_id) <= 18):
        raise NotFound(f"No key with id {token_id!r}.", code="token_not_found")
    try:
        token = await _deps().writer.execute(
            partial(
                _revoke_client_key, client_id=client_id, token_id=int(token_id), now_ms=now_ms()
            )
        )
    except _NotThisClientsKey:
        raise NotFound(
            f"Client {client_id!r} has no key with id {token_id}.", code="token_not_found"
        ) from None
    except LookupError:
        raise _not_found(client_id) from None
    await _refresh_keys()
    await _deps().audit.record(
        "client.token.revoke", client_id, {"token_id": token.id, "masked": token.masked}
    )
    return json_response(token_json(token))
