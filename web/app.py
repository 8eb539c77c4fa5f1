"""The ASGI application served by hypercorn: ``/v1`` on the lean path, the rest on Quart-Trio."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, cast

from hypercorn.middleware import ProxyFixMiddleware
from quart import Response
from quart_trio import QuartTrio

from proxy.config import ServerConfig
from storage.writer import StorageWriter
from web.api import ApiDeps, register_api
from web.api.common import MAX_API_BODY
from web.asgi import ASGIApp, Receive, Scope, Send
from web.early_answers import finish_body_first
from web.fleet_report import refuses_while_down
from web.host_check import guard_hosts
from web.in_flight import InFlight, is_model_call
from web.metrics import Metrics, register_metrics
from web.observed import ObservedParts
from web.readiness import Readiness
from web.sibling_metrics import SiblingMetrics
from web.ui import ui
from web.v1 import v1_app
from web.v1_deps import V1Deps


@dataclasses.dataclass(frozen=True, slots=True)
class AppDeps:
    """What the ASGI app is built from: each surface's own collaborators."""

    server: ServerConfig
    started_at: float  # time.monotonic() at start
    readiness: Readiness
    in_flight: InFlight
    writer: StorageWriter  # asked by /readyz whether the database takes writes
    v1: V1Deps
    metrics: Metrics  # the call counters /metrics reports beside ``observed``
    observed: ObservedParts
    api: ApiDeps | None  # None: the dashboard is off
    siblings: SiblingMetrics | None = None  # a worker of several: /metrics answers for all


def create_quart_app(deps: AppDeps) -> QuartTrio:
    """The Quart-Trio app: health, readiness, metrics, and the dashboard API and UI."""
    app = QuartTrio("llm_proxy", static_folder=None)
    server = deps.server
    # Quart serves no /v1 call: its bodies are the dashboard API's small JSON documents, so a
    # larger one is refused as it arrives, not read whole first. No response timeout: Quart's
    # would silently cut the live feed; our own deadlines apply.
    app.config.update(
        MAX_CONTENT_LENGTH=min(MAX_API_BODY, server.max_body_bytes),
        RESPONSE_TIMEOUT=None,
        BODY_TIMEOUT=server.body_timeout_s,
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.monotonic() - deps.started_at, 3)}

    @app.get("/readyz")
    async def readyz() -> Response:
        problems: list[str] = []
        if deps.readiness.draining:
            problems.append("shutting down")
        elif not deps.readiness.ready:
            problems.append("actors not started")
        elif not await deps.writer.check_writable():
            problems.append("database not writable")
        elif refuses_while_down(deps.observed):
            # on_redis_down = "refuse": every model call is answered 503, so the load balancer
            # should send traffic elsewhere; with "local" it still serves and stays ready.
            problems.append("redis unreachable (on_redis_down = refuse)")
        status = 503 if problems else 200
        body = {"status": "unavailable" if problems else "ready", "problems": problems}
        return cast(Response, await app.make_response((body, status)))

    register_metrics(app, deps.metrics, deps.observed, deps.siblings)

    if deps.api is not None:
        register_api(app, deps.api)
        app.register_blueprint(ui)
    return app


def create_app(deps: AppDeps) -> ASGIApp:
    """Dispatch: ``/v1`` to the fast path, everything else (and the lifespan) to Quart; all of
    it behind the ``Host`` check (:mod:`web.host_check`)."""
    # Quart types its ASGI arguments with hypercorn's TypedDicts; ours are plain mappings.
    quart_app = cast(ASGIApp, create_quart_app(deps))
    # Its guard, 404s, 405s, 413s and static files may answer before the body has arrived.
    quart_app = finish_body_first(quart_app)
    hops = deps.server.trusted_proxy_hops
    if hops:
        # Only the dashboard and its API need the client's scheme, host and address; /v1 skips
        # the scope copy this costs.
        quart_app = cast(
            ASGIApp, ProxyFixMiddleware(cast(Any, quart_app), mode="legacy", trusted_hops=hops)
        )

    in_flight, v1 = deps.in_flight, deps.v1

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await quart_app(scope, receive, send)  # the lifespan, and WebSockets
            return
        with in_flight.request(model_call=is_model_call(scope["method"], scope["path"])):
            if (scope["path"] + "/").startswith("/v1/"):
                await v1_app(v1, scope, receive, send)
            else:
                await quart_app(scope, receive, send)

    return guard_hosts(app, deps.server)
