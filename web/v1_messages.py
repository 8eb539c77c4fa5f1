"""``POST /v1/messages``: Anthropic's Messages API as part of a ``/v1`` call (design §3).

Each route of the chain is called in the protocol it speaks:

- **Passed through** to an upstream that serves the Messages API (Anthropic): the body goes up
  with only the model renamed, with the client's ``anthropic-version``, ``anthropic-beta`` and
  ``?beta=true``; the answer, or each SSE event with its name, comes back as the upstream's bytes.
- **Translated** for every other upstream: the body becomes a chat request
  (:mod:`proxy.messages_to_chat`), which takes the chat path to the provider; the chat answer or
  chunks become a message object or the Messages event sequence (:mod:`proxy.messages_from_chat`,
  :mod:`proxy.messages_events`).

Every error, the gateway's own refusals included (a bad key, a rate limit), is answered in
Anthropic's shape (:mod:`proxy.messages_errors`), so the Anthropic SDKs raise their own classes.
"""

from __future__ import annotations

import msgspec

from actors.provider import ProviderActor
from proxy.chat import ChatRequest, chat_request_of
from proxy.errors import GatewayError, InvalidRequest
from proxy.messages import MessagesHeaders, MessagesRequest, decode_messages_request
from proxy.messages_errors import anthropic_error, error_event
from proxy.messages_events import MessageEventStream
from proxy.messages_from_chat import message_object, new_message_id
from proxy.messages_to_chat import translate_request
from proxy.providers.base import PassedAnswer
from proxy.routing import Route
from proxy.token_estimate import estimate_prompt_tokens
from web.asgi import JSON_TYPE, Headers, Receive, Scope, Send, header, send_body
from web.translated_answers import chat_answer
from web.v1_call import next_or_none
from web.v1_deps import V1Deps
from web.v1_protocol_call import ProtocolCall

_encode = msgspec.json.Encoder().encode


async def send_anthropic_error(send: Send, error: GatewayError, headers: Headers) -> None:
    """An Anthropic-shaped error response with the error's own extra headers."""
    status, extra, body = anthropic_error(error)
    pairs = [(name.encode(), value.encode()) for name, value in extra.items()]
    await send_body(send, status, body, [JSON_TYPE, *headers, *pairs])


def _request_id(headers: Headers) -> str | None:
    """The gateway's id of the call, which Anthropic's errors carry as ``request_id``."""
    return next((value.decode() for name, value in headers if name == b"x-request-id"), None)


def protocol_headers(scope: Scope) -> MessagesHeaders:
    """The client's ``anthropic-version``, ``anthropic-beta`` and ``?beta=true``."""
    version = header(scope, b"anthropic-version")
    beta = header(scope, b"anthropic-beta")
    query = scope.get("query_string", b"")
    pairs = query.split(b"&") if isinstance(query, bytes) else []
    return MessagesHeaders(
        version=version.decode("latin-1") if version else None,
        beta=beta.decode("latin-1") if beta else None,
        beta_query=b"beta=true" in pairs,
    )


class MessagesCall(ProtocolCall[MessagesRequest]):
    """One ``POST /v1/messages``, answered whole or as the Messages event sequence."""

    ENDPOINT = "messages"

    def _decode(self, body: bytes) -> MessagesRequest:
        return decode_messages_request(body).with_headers(protocol_headers(self.scope))

    async def _call_route(
        self, actor: ProviderActor, request: MessagesRequest, route: Route
    ) -> None:
        if actor.speaks(request.PROTOCOL):
            if request.stream:
                await self._pass_stream(actor, request, route)
            else:
                await self._pass_complete(actor, request, route)
            return
        chat_raw, params = translate_request(request.raw)
        try:
            chat = chat_request_of(chat_raw)
            if request.stream:
                await self._translated_stream(actor, request, chat, route)
            else:
                await self._translated_complete(actor, request, chat, route)
        except InvalidRequest as exc:
            # Refused on the chat path (by its checks or the provider's translator): named as
            # the field the client sent, not the chat field made of it.
            raise params.renamed(exc) from None

    async def _send_error_before_start(self, error: GatewayError) -> None:
        await send_anthropic_error(self.send, error, self._headers())

    def _error_event(self, error: GatewayError) -> bytes:
        return error_event(error, request_id=self.request_id)

    # -- passed through ----------------------------------------------------------------------

    async def _pass_complete(
        self, actor: ProviderActor, request: MessagesRequest, route: Route
    ) -> None:
        answer = await actor.complete(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        )
        assert isinstance(answer, PassedAnswer), "a passed-through call answers with its bytes"
        self._answered(answer.usage, answer.body)
        await self._send_whole(answer.body)

    async def _pass_stream(
        self, actor: ProviderActor, request: MessagesRequest, route: Route
    ) -> None:
        async with actor.stream(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        ) as items:
            await self._relay_passed(items, await next_or_none(items))

    # -- translated ----------------------------------------------------------------------------

    async def _translated_complete(
        self, actor: ProviderActor, request: MessagesRequest, chat: ChatRequest, route: Route
    ) -> None:
        answer = await actor.complete(
            chat, route.upstream_model, self.timing, client=self._client_bucket()
        )
        translated = chat_answer(route.provider, answer)
        message = message_object(
            translated, request.raw, message_id=new_message_id(), model=request.model
        )
        payload = _encode(message)
        self._answered(translated.usage, payload)
        await self._send_whole(payload)

    async def _translated_stream(
        self, actor: ProviderActor, request: MessagesRequest, chat: ChatRequest, route: Route
    ) -> None:
        async with actor.stream(
            chat, route.upstream_model, self.timing, client=self._client_bucket()
        ) as items:
            item = await next_or_none(items)
            events = MessageEventStream(
                request.raw,
                message_id=new_message_id(),
                model=request.model,
                # The SDK shows message_start's input count until message_delta's real one.
                input_tokens=estimate_prompt_tokens(request, len(self.body)),
                request_id=self.request_id,
            )
            await self._relay_translated(items, item, events, route.provider)
        await self._close_translated(events)


async def create_message(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI handler of ``POST /v1/messages``."""
    await MessagesCall(deps, scope, receive, send).handle()


__all__ = ["MessagesCall", "create_message", "protocol_headers", "send_anthropic_error"]
