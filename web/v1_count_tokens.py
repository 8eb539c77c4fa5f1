"""``POST /v1/messages/count_tokens``: a Messages request's input tokens, before sending it.

Routed by ``model`` like a call. The Anthropic upstream counts exactly (its own endpoint, with
the client's protocol headers); for any other provider the gateway estimates from the request it
would send there, without a tokenizer (:func:`proxy.messages_tokens.estimate_input_tokens`). Free
and unlogged, as upstream; errors in Anthropic's shape.
"""

from __future__ import annotations

import msgspec

from proxy.messages import decode_messages_request
from proxy.messages_tokens import estimate_input_tokens
from web.asgi import Receive, Scope, Send
from web.auth import Caller
from web.v1_deps import V1Deps
from web.v1_messages import protocol_headers, send_anthropic_error
from web.v1_small import small_answer

_encode = msgspec.json.Encoder().encode


async def count_message_tokens(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI handler of ``POST /v1/messages/count_tokens``."""

    async def answer(caller: Caller, body: bytes) -> bytes:
        request = decode_messages_request(body, counting=True)
        route = deps.router.resolve_chain(request.model)[0]
        actor = deps.providers[route.provider]
        if actor.speaks(request.PROTOCOL):
            counted = request.with_headers(protocol_headers(scope))
            return await actor.count_message_tokens(counted, route.upstream_model)
        return _encode({"input_tokens": estimate_input_tokens(request.raw)})

    await small_answer(
        deps, scope, receive, send, ("POST",), answer, send_failure=send_anthropic_error
    )
