"""The dashboard API (design §8): JSON under ``/api``, deny by default."""

from __future__ import annotations

import logging

from quart import Response, has_request_context, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from web.api.auth import auth
from web.api.clients import clients
from web.api.common import ApiError
from web.api.guard import install_guard
from web.api.live import live
from web.api.providers import providers
from web.api.system import system
from web.api.usage import usage
from web.gateway import Gateway

log = logging.getLogger("llm_proxy.api")


def register_api(app: QuartTrio, gateway: Gateway) -> None:
    """Install the guard, the JSON error answers and every ``/api`` blueprint on ``app``."""
    app.config["LLM_PROXY_GATEWAY"] = gateway
    install_guard(app)

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error.response()

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
        return ApiError(status, message).response()

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        # Outside /api Quart answers as usual (its handler re-raises into its own 500 page).
        if not has_request_context() or not request.path.startswith("/api"):
            raise error
        log.exception("%s %s failed", request.method, request.path)
        return ApiError(500, "The gateway hit an internal error; see its log.").response()

    for blueprint in (auth, clients, live, providers, system, usage):
        app.register_blueprint(blueprint)
