"""``GET`` and ``DELETE /v1/responses/{id}``: a stored response, for the client that made it.

A response is stored when ``store`` was not false (:mod:`web.v1_responses`): translated ones
with everything, passed-through ones as the upstream answered them. Any other client's id, an
expired one or an unknown one is the same 404, so an id reveals nothing about whose it is.
"""

from __future__ import annotations

import logging

import msgspec

from proxy.errors import GatewayError, InternalError, MethodNotAllowed, NotFound, shutting_down
from web.asgi import JSON_TYPE, ClientGone, Receive, Scope, Send, read_body, send_body, send_error
from web.limits import rate_limit_headers
from web.v1_call import new_request_id
from web.v1_deps import V1Deps
from web.v1_models import authenticate

log = logging.getLogger("llm_proxy.v1")

_encode = msgspec.json.Encoder().encode


async def stored_response(
    deps: V1Deps, scope: Scope, receive: Receive, send: Send, response_id: str
) -> None:
    """Answer ``GET`` (the response object) or ``DELETE`` (its deletion) of ``response_id``."""
    headers = [
        (b"x-request-id", new_request_id().encode()),
        (b"x-llm-proxy-provider", b"none"),
    ]
    try:
        server = deps.config.server
        await read_body(scope, receive, server.max_body_bytes, server.body_timeout_s)
        if deps.readiness.draining:
            raise shutting_down()
        method = scope["method"]
        if method not in ("GET", "DELETE"):
            raise MethodNotAllowed(f"Use GET or DELETE for {scope['path']}.")
        caller = authenticate(deps, scope)
        headers += rate_limit_headers(deps.limiter.peek(caller.bucket, caller.limits))
        if method == "GET":
            stored = await deps.responses.get(response_id, caller.client_id)
            if stored is None:
                raise _not_found(response_id)
            body = stored.response_json.encode()
        else:
            if not await deps.responses.delete(response_id, caller.client_id):
                raise _not_found(response_id)
            body = _encode({"id": response_id, "object": "response", "deleted": True})
        await send_body(send, 200, body, [JSON_TYPE, *headers])
    except ClientGone:
        return
    except GatewayError as exc:
        await send_error(send, exc, headers)
    except Exception:
        log.exception("unexpected error on %s", scope["path"])
        await send_error(send, InternalError("The gateway hit an internal error."), headers)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
