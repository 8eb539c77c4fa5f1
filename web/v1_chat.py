"""``POST /v1/chat/completions``: the chat protocol's part of a ``/v1`` call (design §3)."""

from __future__ import annotations

from time import perf_counter

import msgspec

from actors.provider import ProviderActor
from proxy.chat import ChatRequest, decode_chat_request
from proxy.errors import ErrorBody, GatewayError
from proxy.providers.base import PassedAnswer, PassedEvent
from proxy.routing import Route
from proxy.sse import DONE, encode_event
from web.asgi import SSE_HEADERS, Receive, Scope, Send
from web.v1_call import V1Call, next_or_none
from web.v1_deps import V1Deps

_encode = msgspec.json.Encoder().encode


class ChatCall(V1Call[ChatRequest]):
    """One chat completion, answered whole or streamed as ``chat.completion.chunk`` events."""

    ENDPOINT = "chat"

    def _decode(self, body: bytes) -> ChatRequest:
        return decode_chat_request(body)

    async def _call_route(self, actor: ProviderActor, request: ChatRequest, route: Route) -> None:
        if request.stream:
            await self._stream(actor, request, route)
        else:
            await self._complete(actor, request, route)

    async def _send_error_after_start(self, error: GatewayError) -> None:
        # The status line is gone; the error travels as an event and the stream ends without
        # [DONE], so no client mistakes it for a complete answer.
        await self.send(_event(_encode(ErrorBody(error.detail()))))
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _complete(self, actor: ProviderActor, request: ChatRequest, route: Route) -> None:
        answer = await actor.complete(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        )
        # Passed through: the upstream's own bytes; translated: encoded in OpenAI's shape.
        payload = answer.body if isinstance(answer, PassedAnswer) else _encode(answer)
        self._answered(answer.usage, payload)
        await self._send_whole(payload)

    async def _stream(self, actor: ProviderActor, request: ChatRequest, route: Route) -> None:
        async with actor.stream(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        ) as items:
            # Headers wait for the first item, so a failure before it still gets a real status.
            item = await next_or_none(items)
            self.ttft_s = perf_counter() - self.started
            await self.send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [*SSE_HEADERS, *self._headers()],
                }
            )
            self.response_started = True
            keep_text = self.deps.config.logging.store_bodies
            pieces: list[str] = []
            include_usage = request.include_usage
            try:
                while item is not None:  # the items after the first are read at the loop's end
                    if item.usage is not None:
                        self.usage = item.usage
                    if isinstance(item, PassedEvent):
                        # The upstream's own event, already edited for this client.
                        if keep_text and item.text:
                            pieces.append(item.text)
                        if item.data is not None:
                            await self.send(_event(item.data))
                    else:
                        if keep_text:
                            pieces.extend(c.delta.content for c in item.choices if c.delta.content)
                        # The upstream is always asked for usage; the client sees it only if it
                        # asked.
                        if item.choices or include_usage:
                            await self.send(_event(_encode(item)))
                    try:
                        item = await items.__anext__()  # read here, not by a helper: per event
                    except StopAsyncIteration:
                        break
            finally:
                # A stream that failed or was abandoned keeps the text it got as far as.
                if keep_text:
                    self.response_text = "".join(pieces)
        self._done = True
        await self.send({"type": "http.response.body", "body": DONE, "more_body": False})


def _event(payload: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": encode_event(payload), "more_body": True}


async def chat_completions(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI handler."""
    await ChatCall(deps, scope, receive, send).handle()
