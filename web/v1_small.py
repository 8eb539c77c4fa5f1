"""Cheap, unlogged ``/v1`` requests (the model list, stored responses, errors): one shape."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from proxy.errors import GatewayError, InternalError, MethodNotAllowed, shutting_down
from web.asgi import (
    JSON_TYPE,
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    send_body,
    send_error,
)
from web.auth import Caller
from web.limits import rate_limit_headers
from web.v1_call import new_request_id
from web.v1_deps import V1Deps
from web.v1_models import authenticate

log = logging.getLogger("llm_proxy.v1")

# The body of a 200 for the authenticated caller and the request's body; a GatewayError for any
# other answer.
Answer = Callable[[Caller, bytes], Awaitable[bytes]]
# How an error is told: OpenAI's shape unless the protocol has its own.
SendFailure = Callable[[Send, GatewayError, Headers], Awaitable[None]]


async def small_answer(
    deps: V1Deps,
    scope: Scope,
    receive: Receive,
    send: Send,
    methods: tuple[str, ...],
    answer: Answer,
    error: GatewayError | None = None,
    *,
    send_failure: SendFailure = send_error,
) -> None:
    """Answer one request a method of ``methods`` with ``answer``'s JSON, or ``error``."""
    headers = [
        (b"x-request-id", new_request_id().encode()),
        (b"x-llm-proxy-provider", b"none"),
        (b"x-llm-proxy-overhead-ms", b"0"),
    ]
    try:
        # Whatever the answer, the body is read first: answering while the client still sends
        # races hypercorn's own answer to an incomplete body.
        server = deps.config.server
        body = await read_body(scope, receive, server.max_body_bytes, server.body_timeout_s)
        if error is not None:
            raise error
        if deps.readiness.draining:
            raise shutting_down()
        if scope["method"] not in methods:
            raise MethodNotAllowed(f"Use {' or '.join(methods)} for {scope['path']}.")
        caller = authenticate(deps, scope)
        # Spends no request budget, but still says where the budget stands.
        headers += rate_limit_headers(await deps.limiter.peek(caller.bucket, caller.limits))
        answered = await answer(caller, body)
        await send_body(send, 200, answered, [JSON_TYPE, *headers])
    except ClientGone:
        return
    except GatewayError as exc:
        await send_failure(send, exc, headers)
    except Exception:
        log.exception("unexpected error on %s", scope["path"])
        await send_failure(send, InternalError("The gateway hit an internal error."), headers)
