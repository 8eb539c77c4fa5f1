"""The dashboard API (design §8): JSON under ``/api``, deny by default."""

from __future__ import annotations

import dataclasses
import logging

from quart import Response, has_request_context, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.session_store import Sessions
from proxy.errors import GatewayError, InternalError, ServiceUnavailable
from storage.outage import is_unavailable
from web.api.auth import AuthApi, auth
from web.api.budgets import BudgetsApi, budgets
from web.api.clients import ClientsApi, clients
from web.api.common import error_for_status, error_response, provide
from web.api.guard import install_guard
from web.api.live import LiveApi, live
from web.api.providers import ProvidersApi, providers
from web.api.system import SystemApi, system
from web.api.usage import UsageApi, usage

log = logging.getLogger("llm_proxy.api")


@dataclasses.dataclass(frozen=True, slots=True)
class ApiDeps:
    """The collaborators of each ``/api`` area; every blueprint sees only its own."""

    sessions: Sessions  # for the guard
    auth: AuthApi
    clients: ClientsApi
    live: LiveApi
    providers: ProvidersApi
    system: SystemApi
    usage: UsageApi
    budgets: BudgetsApi | None = None  # /api/budgets, when the service keeps budgets


def register_api(app: QuartTrio, deps: ApiDeps) -> None:
    """Install the guard, the JSON error answers and every ``/api`` blueprint on ``app``."""
    for area in (deps.auth, deps.clients, deps.live, deps.providers, deps.system, deps.usage):
        provide(app, area)
    if deps.budgets is not None:
        provide(app, deps.budgets)
        app.register_blueprint(budgets)
    install_guard(app, deps.sessions)

    @app.errorhandler(GatewayError)
    async def api_error(error: GatewayError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response | HTTPException:
        # Quart's own 404/405/413 answers are HTML; the API answers JSON, everything else as is.
        if not has_request_context() or not request.path.startswith("/api"):
            return error
        status = error.code or 500
        messages = {
            404: f"No API route {request.path}.",
            405: f"{request.method} is not allowed on {request.path}.",
            413: f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes.",
        }
        message = messages.get(status, error.description or error.name)
        return error_response(error_for_status(status, message))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        # Outside /api Quart answers as usual (its handler re-raises into its own 500 page).
        if not has_request_context() or not request.path.startswith("/api"):
            raise error
        if is_unavailable(error):
            # The database's outage, not a bug: the caller may retry once it is back.
            log.warning("%s %s: database unavailable: %s", request.method, request.path, error)
            return error_response(
                ServiceUnavailable(
                    "Database unavailable: the gateway cannot reach its database right now; "
                    "retry in a moment.",
                    code="database_unavailable",
                    headers={"retry-after": "5"},
                )
            )
        log.exception("%s %s failed", request.method, request.path)
        return error_response(InternalError("The gateway hit an internal error; see its log."))

    for blueprint in (auth, clients, live, providers, system, usage):
        app.register_blueprint(blueprint)
