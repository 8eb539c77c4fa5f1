"""The ``/v1`` ASGI application: the OpenAI-compatible surface, dispatched without a framework."""

from __future__ import annotations

import logging
from urllib.parse import unquote

from proxy.errors import GatewayError, InternalError, MethodNotAllowed, NotFound, shutting_down
from web.asgi import (
    JSON_TYPE,
    ClientGone,
    Receive,
    Scope,
    Send,
    read_body,
    send_body,
    send_error,
)
from web.limits import rate_limit_headers
from web.v1_call import new_request_id
from web.v1_chat import chat_completions
from web.v1_deps import V1Deps
from web.v1_models import authenticate, models_body
from web.v1_responses import create_response
from web.v1_stored_responses import stored_response

log = logging.getLogger("llm_proxy.v1")


async def v1_app(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one ``/v1/...`` HTTP request."""
    path: str = scope["path"]
    method: str = scope["method"]
    if path in ("/v1/chat/completions", "/v1/chat/completions/"):
        if method == "POST":
            await chat_completions(deps, scope, receive, send)
            return
        await _small(deps, scope, receive, send, None, MethodNotAllowed(f"Use POST for {path}."))
        return
    if path in ("/v1/responses", "/v1/responses/"):
        if method == "POST":
            await create_response(deps, scope, receive, send)
            return
        await _small(deps, scope, receive, send, None, MethodNotAllowed(f"Use POST for {path}."))
        return
    if path.startswith("/v1/responses/"):
        response_id = unquote(path[len("/v1/responses/") :]).rstrip("/")
        if response_id and "/" not in response_id:
            await stored_response(deps, scope, receive, send, response_id)
            return
    if path == "/v1/models" or path.startswith("/v1/models/"):
        model = unquote(path[len("/v1/models/") :]) if path.startswith("/v1/models/") else None
        await _small(deps, scope, receive, send, model or None, None)
        return
    await _small(
        deps,
        scope,
        receive,
        send,
        None,
        NotFound(
            f"Unknown path {path}: this gateway serves /v1/chat/completions, /v1/responses "
            "and /v1/models."
        ),
    )


async def _small(
    deps: V1Deps,
    scope: Scope,
    receive: Receive,
    send: Send,
    model: str | None,
    error: GatewayError | None,
) -> None:
    """Answer a cheap, unlogged ``/v1`` request: the model list, or an error."""
    headers = [
        (b"x-request-id", new_request_id().encode()),
        (b"x-llm-proxy-provider", b"none"),
        (b"x-llm-proxy-overhead-ms", b"0"),
    ]
    try:
        # Whatever the answer, the body is read first: answering while the client still sends
        # races hypercorn's own answer to an incomplete body.
        server = deps.config.server
        await read_body(scope, receive, server.max_body_bytes, server.body_timeout_s)
        if error is not None:
            raise error
        if deps.readiness.draining:
            raise shutting_down()
        if scope["method"] != "GET":
            raise MethodNotAllowed(f"Use GET for {scope['path']}.")
        caller = authenticate(deps, scope)
        # Listing models spends no request budget, but still says where the budget stands.
        headers += rate_limit_headers(deps.limiter.peek(caller.bucket, caller.limits))
        body = await models_body(deps, model)
        await send_body(send, 200, body, [JSON_TYPE, *headers])
    except ClientGone:
        return
    except GatewayError as exc:
        await send_error(send, exc, headers)
    except Exception:
        log.exception("unexpected error on %s", scope["path"])
        await send_error(send, InternalError("The gateway hit an internal error."), headers)
