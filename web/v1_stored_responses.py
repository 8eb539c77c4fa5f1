"""``GET`` and ``DELETE /v1/responses/{id}``: a stored response, for the client that made it.

A response is stored when ``store`` was not false (:mod:`web.v1_responses`): translated ones
with everything, passed-through ones as the upstream answered them. Any other client's id, an
expired one or an unknown one is the same 404, so an id reveals nothing about whose it is.
Deleting a passed-through response deletes it at the provider too.
"""

from __future__ import annotations

import contextlib

import msgspec

from proxy.errors import NotFound, ProviderDisabled
from web.asgi import Receive, Scope, Send
from web.auth import Caller
from web.v1_deps import V1Deps
from web.v1_small import small_answer

_encode = msgspec.json.Encoder().encode


async def stored_response(
    deps: V1Deps, scope: Scope, receive: Receive, send: Send, response_id: str
) -> None:
    """Answer ``GET`` (the response object) or ``DELETE`` (its deletion) of ``response_id``."""

    async def answer(caller: Caller, body: bytes) -> bytes:
        if scope["method"] == "GET":
            stored = await deps.responses.get(response_id, caller.client_id)
            if stored is None:
                raise _not_found(response_id)
            return stored.response_json.encode()
        stored = await deps.responses.get(response_id, caller.client_id)
        if stored is None:
            raise _not_found(response_id)
        actor = deps.providers.get(stored.provider)
        if stored.upstream_held and actor is not None:
            # Gone upstream first: when that fails the client is told and may try again. A
            # disabled provider will not answer again: the gateway's copy goes all the same.
            with contextlib.suppress(ProviderDisabled):
                await actor.forget_response(response_id)
        if not await deps.responses.delete(response_id, caller.client_id):
            raise _not_found(response_id)
        return _encode({"id": response_id, "object": "response", "deleted": True})

    await small_answer(deps, scope, receive, send, ("GET", "DELETE"), answer)


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
