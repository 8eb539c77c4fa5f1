"""``GET /api/ws``: the dashboard's live feed (design §8), one JSON text frame per event.

Frames: ``hello`` first, then ``request`` for every logged call, ``metrics`` every few seconds,
whatever the event hub publishes (``provider`` breaker changes, ``credit``) as is, and ``ping``.

A socket only ever reads from bounded queues that the publishers fill without waiting; this
connection's own outbox is bounded too, so a client that stops reading loses events (counted in
its ``metrics``) while the gateway and every other socket go on at full speed.

The guard runs only for HTTP requests: the handler authenticates itself, before the upgrade, and
re-checks the session on every metrics tick so that a logout or a password change ends the feed.
Sockets are capped per session and in all (``[dashboard] max_live_feeds_per_session`` and
``max_live_feeds``), refused before the upgrade; a socket's place is freed when it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Final

import msgspec
import trio
from quart import Blueprint, Response, websocket

from actors.client_directory import ClientDirectory
from actors.fleet_presence import FleetPresence
from actors.provider import ProviderActor
from actors.request_logger import RequestLogger
from actors.session_store import Session, Sessions
from proxy.config import DashboardConfig
from proxy.errors import (
    GatewayError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    UpstreamUnavailable,
)
from proxy.records import LiveCall
from proxy.routing import Router
from web.api.common import deps_of, error_response, now_ms
from web.api.guard import SESSION_COOKIE, authenticate, request_token, same_origin
from web.events import EventHub
from web.in_flight import InFlight
from web.live_feeds import LiveFeeds, LiveFeedsFull
from web.readiness import Readiness

log = logging.getLogger("llm_proxy.api.live")

live = Blueprint("api_live", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class LiveApi:
    """What ``/api/ws`` uses."""

    caps: DashboardConfig  # max_live_feeds, max_live_feeds_per_session
    live_feeds: LiveFeeds
    readiness: Readiness
    sessions: Sessions
    logger: RequestLogger  # its feed of logged calls and its counters
    events: EventHub
    router: Router  # which model names are aliases
    providers: Mapping[str, ProviderActor]  # their statistics
    started_at: float  # time.monotonic() at start
    clients: ClientDirectory  # the clients' names, in memory: no database read per call
    in_flight: InFlight  # the model calls being answered (the tile)
    # In a fleet: the other instances' live figures, added to this one's tiles.
    presence: FleetPresence | None = None


# Module constants rather than config: tests shorten them with monkeypatch.
METRICS_EVERY_S: float = 5.0
# Calls logged within this long of each other share one metrics frame: a burst of a thousand calls
# is a few frames, and the tiles are never more than this behind the table.
METRICS_COALESCE_S: float = 0.1
PING_EVERY_S: float = 30.0
OUTBOX_SIZE: int = 256
# How long a close frame may take to leave before the socket is abandoned to the server.
CLOSE_WAIT_S: Final = 2.0
# When a refused socket may try again: the place of a dropped connection frees within seconds.
FULL_RETRY_S: Final = 5

SESSION_ENDED: Final = 4401
PASSWORD_CHANGE: Final = 4403
GOING_AWAY: Final = 1001
INTERNAL_ERROR: Final = 1011

_URL_SECRETS: Final = frozenset({"token", "access_token", "session", "key", "api_key"})
# Named one by one, not "every field but the bodies": a field added to the record later is shown
# only once someone has decided it may be.
SHOWN_FIELDS: Final = (
    "request_id",
    "ts_ms",
    "client_id",
    "provider",
    "model",
    "upstream_model",
    "stream",
    "status",
    "http_status",
    "error_type",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
    "has_images",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "attempts",
    "endpoint",
    "instance",
)

_encode = msgspec.json.Encoder().encode

Message = Mapping[str, object]


@live.websocket("/ws")
async def feed() -> Response | None:
    gw = deps_of(LiveApi)
    caps = gw.caps
    with contextlib.ExitStack() as place:
        try:
            token, current = await _admit(gw)
            try:
                place.enter_context(
                    gw.live_feeds.place(
                        current.key,
                        per_session=caps.max_live_feeds_per_session,
                        total=caps.max_live_feeds,
                    )
                )
            except LiveFeedsFull as full:
                raise _refusal(full) from None
        except GatewayError as error:
            # Returned before accept(): the client gets this status and JSON instead of an
            # upgrade.
            return error_response(error)
        await websocket.accept()
        connection = LiveFeed(gw, token, current)
        try:
            await connection.serve()
        except Exception:
            # Logged here once: the app's error handlers are written for HTTP requests.
            log.exception("live feed of %s failed", current.username)
            with trio.move_on_after(CLOSE_WAIT_S):
                await connection.close(INTERNAL_ERROR, "internal error; see the gateway's log")
    return None


def _refusal(full: LiveFeedsFull) -> GatewayError:
    if full.scope == "session":
        return RateLimited(
            "This session has as many live feeds open as it may "
            "([dashboard] max_live_feeds_per_session); close one (another tab?) and retry.",
            code="too_many_live_feeds",
            headers={"retry-after": str(FULL_RETRY_S)},
        )
    return UpstreamUnavailable(
        "The gateway has as many live feeds open as it may ([dashboard] max_live_feeds); "
        "retry in a moment.",
        code="live_feeds_full",
        headers={"retry-after": str(FULL_RETRY_S)},
    )


async def _admit(deps: LiveApi) -> tuple[str, Session]:
    """The token and session of the socket being opened; a 4xx error when it is refused."""
    if deps.readiness.draining:
        raise UpstreamUnavailable("The gateway is shutting down; reconnect in a moment.")
    if _URL_SECRETS & set(websocket.args):
        raise InvalidRequest(
            "Send the session as 'Authorization: Bearer <token>' or the session cookie: a token "
            "in the URL ends up in logs and browser history.",
            code="token_in_url",
        )
    token, via_cookie = request_token(
        websocket.headers.get("authorization"), websocket.cookies.get(SESSION_COOKIE)
    )
    # Browsers send cookies with a cross-site WebSocket handshake (no CORS applies): only the
    # Origin tells this dashboard's page from another site's.
    if via_cookie and not same_origin(
        websocket.headers.get("origin"), websocket.scheme, websocket.host
    ):
        raise PermissionDenied(
            "Refused: a live feed opened with the session cookie must come from this dashboard "
            "(the Origin header does not match).",
            code="bad_origin",
        )
    current = await authenticate(deps.sessions, token)
    if current.must_change_password:
        raise PermissionDenied(
            "Change your password first (POST /api/auth/change-password).",
            code="password_change_required",
        )
    assert token is not None  # authenticate() found a session for it
    return token, current


class LiveFeed:
    """One open socket: pumps from the logger and the event hub, tickers, and the one sender."""

    def __init__(self, deps: LiveApi, token: str, session: Session) -> None:
        self._deps = deps
        self._token = token
        self._session = session
        self._send, self._outbox = trio.open_memory_channel[str](OUTBOX_SIZE)
        self._close_with: tuple[int, str] | None = None
        self._logged = trio.Event()  # a call was logged since the last metrics frame
        self._closed = False
        self.dropped = 0

    async def serve(self) -> None:
        """Feed the socket until the client leaves, the session ends or the server stops."""
        gw = self._deps
        try:
            with gw.logger.subscribe() as records, gw.events.subscribe() as events:
                hello = {
                    "type": "hello",
                    "user": self._session.username,
                    "role": self._session.role,
                }
                self._post(hello)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._deliver)
                    nursery.start_soon(self._discard_input)
                    nursery.start_soon(self._pump_records, records)
                    nursery.start_soon(self._pump_events, events)
                    nursery.start_soon(self._tick_metrics, nursery.cancel_scope)
                    nursery.start_soon(self._tick_pings)
            if self._close_with is not None:
                with trio.move_on_after(CLOSE_WAIT_S):
                    await self.close(*self._close_with)
        finally:
            if gw.readiness.draining:
                # Cancelled by the server stopping: say so, so the page retries later instead of
                # reporting an error. Shielded and short, so it never holds up the shutdown.
                with trio.move_on_after(CLOSE_WAIT_S, shield=True):
                    await self.close(GOING_AWAY, "the gateway is shutting down")

    # -- the one task that writes to the socket ---------------------------------------------------

    def _post(self, message: Message) -> None:
        """Queue ``message`` for the client without waiting; a full outbox drops it (counted)."""
        try:
            text = _encode(message).decode()
        except (TypeError, msgspec.EncodeError):
            log.exception("live feed: cannot encode a %r event; skipped", message.get("type"))
            return
        try:
            self._send.send_nowait(text)
        except trio.WouldBlock:
            self.dropped += 1

    async def _deliver(self) -> None:
        # A slow client blocks only this task; the pumps keep draining into the bounded outbox.
        async for text in self._outbox:
            await websocket.send(text)

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        await websocket.close(code, reason)

    async def _discard_input(self) -> None:
        # Nothing is read from the client, but its frames must be consumed: Quart-Trio's inbound
        # queue is small, and while it is full a disconnect would go unnoticed.
        while True:
            await websocket.receive()

    # -- sources ----------------------------------------------------------------------------------

    async def _pump_records(self, records: trio.MemoryReceiveChannel[LiveCall]) -> None:
        aliases = self._deps.router.aliases
        name_of = self._deps.clients.client_name
        async for record in records:
            alias = record.model if record.model in aliases else None
            self._post(request_event(record, alias, name_of(record.client_id)))
            self._logged.set()

    async def _pump_events(self, events: trio.MemoryReceiveChannel[Message]) -> None:
        async for event in events:
            self._post(event)

    async def _tick_metrics(self, feed: trio.CancelScope) -> None:
        """Metrics every period, and also as soon as calls are logged or one leaves the last
        minute, so the tiles agree with the table beside them instead of lagging a period."""
        self._post(self._metrics())
        tick = trio.current_time() + METRICS_EVERY_S
        while True:
            # Never sooner than a coalescing interval after the last frame: once a busy minute
            # ends, a call leaves it every few milliseconds.
            posted = trio.current_time()
            wake = tick
            drop = self._deps.logger.next_drop()
            if drop is not None:
                # A millisecond late: the count has surely fallen by then.
                wake = min(wake, drop + 0.001)
            with trio.move_on_at(wake):
                await self._logged.wait()
            if self._logged.is_set():
                await trio.sleep(METRICS_COALESCE_S)  # the rest of the burst
            await trio.sleep_until(posted + METRICS_COALESCE_S)
            self._logged = trio.Event()
            if trio.current_time() >= tick:
                tick = trio.current_time() + METRICS_EVERY_S
                self._close_with = await self._session_ended()
                if self._close_with is not None:
                    feed.cancel()
                    return
            self._post(self._metrics())

    async def _tick_pings(self) -> None:
        while True:
            await trio.sleep(PING_EVERY_S)
            self._post({"type": "ping", "ts_ms": now_ms()})

    # -- session and metrics ----------------------------------------------------------------------

    async def _session_ended(self) -> tuple[int, str] | None:
        """A close code and reason once the session has expired or was revoked."""
        try:
            current = await self._deps.sessions.peek(self._token)
        except GatewayError:
            # The fleet's session store is unreachable and the policy refuses: whether the
            # session ended cannot be told, so the feed stays open until it can be.
            return None
        if current is None:
            return SESSION_ENDED, "session ended: sign in again"
        if current.must_change_password:
            return PASSWORD_CHANGE, "password change required"
        return None

    def _metrics(self) -> Message:
        gw = self._deps
        stats = gw.logger.statistics()
        hub = gw.events.statistics()
        per_min, errors_per_min = gw.logger.recent_calls()
        providers: dict[str, Message] = {}
        in_flight = gw.in_flight.count
        for name, actor in gw.providers.items():
            provider = actor.statistics()
            providers[name] = {
                "state": provider.breaker_state,
                "in_flight": provider.in_flight,
                "waiting": provider.waiting,
            }
        if gw.presence is not None:
            # The tiles describe the fleet, as the feed does: the others' figures are as of
            # their last heartbeat (2 s).
            for other in gw.presence.others():
                per_min += other.requests_per_min
                errors_per_min += other.errors_per_min
                in_flight += other.calls_in_flight
        return {
            "type": "metrics",
            "ts_ms": now_ms(),
            "uptime_s": round(time.monotonic() - gw.started_at, 3),
            "requests_per_min": per_min,
            "errors_per_min": errors_per_min,
            "in_flight": in_flight,
            "requests_total": stats.records,
            "errors_total": stats.errors,
            "cancelled_total": stats.cancelled,
            "prompt_tokens_total": stats.prompt_tokens,
            "completion_tokens_total": stats.completion_tokens,
            "cost_usd_total": round(stats.cost_usd, 6),
            "providers": providers,
            "dropped": self.dropped,
            "dropped_total": stats.events_dropped + hub.dropped,
        }


def request_event(record: LiveCall, alias: str | None, client_name: str | None) -> Message:
    """A logged call as the feed shows it: no bodies, the fallbacks' failures parsed, the
    instance that served it, the alias the client asked by (None when it named a model
    directly) and its client's name (None for anonymous, static-key and deleted clients)."""
    event: dict[str, object] = {"type": "request"}
    for name in SHOWN_FIELDS:
        event[name] = getattr(record, name)
    event["failed_attempts"] = _parsed(record.failed_attempts)
    event["alias"] = alias
    event["client_name"] = client_name
    return event


def _parsed(failed_attempts: str | None) -> object:
    if failed_attempts is None:
        return None
    try:
        return msgspec.json.decode(failed_attempts)
    except msgspec.DecodeError:
        return None
