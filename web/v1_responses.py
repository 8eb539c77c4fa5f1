"""``POST /v1/responses``: the Responses API's part of a ``/v1`` call (design §3).

Each route of the chain is called in the protocol it speaks:

- **Passed through** to an upstream that serves the Responses API (OpenAI, xAI): the body goes up
  as sent (model renamed) and the answer, or each SSE event, comes back as the upstream's bytes.
- **Translated** for every other upstream: the body becomes a chat request
  (:mod:`proxy.responses_to_chat`), which takes the chat path to the provider (and its own
  translation there); the chat answer becomes a response object, or the Responses event sequence
  (:mod:`proxy.responses_from_chat`, :mod:`proxy.responses_events`).

Responses are stored (unless ``store`` is false) so that ``previous_response_id`` continues a
conversation on any provider and ``GET``/``DELETE /v1/responses/{id}`` find it, each visible only
to the client that made it. A continuation routed back to the upstream that holds the earlier
response passes the id on; anywhere else the stored items are sent in its place.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import trio

from actors.provider import ProviderActor
from proxy.chat import ChatRequest, chat_request_of
from proxy.errors import GatewayError, InvalidRequest
from proxy.providers.base import PassedAnswer, PassedEvent
from proxy.responses import ResponsesRequest, decode_responses_request
from proxy.responses_events import ResponseEventStream
from proxy.responses_from_chat import new_item_id, response_object
from proxy.responses_to_chat import input_items, translate_request
from proxy.routing import Route
from storage.responses import ResponseToStore, StoredResponse
from web.asgi import Receive, Scope, Send
from web.translated_answers import chat_answer
from web.v1_call import next_or_none
from web.v1_deps import V1Deps
from web.v1_protocol_call import EventBuilder, ProtocolCall

log = logging.getLogger("llm_proxy.v1")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
STORE_WAIT_S = 10.0


class _ResponseFacts(msgspec.Struct):
    """What storing a response object needs of it; its other fields are skipped unread."""

    id: Any = None
    status: Any = None


class _LifecycleFacts(msgspec.Struct):
    """The response object a passed-through lifecycle event (created, completed…) carries, as
    its bytes."""

    response: msgspec.Raw = msgspec.Raw()
    """Empty when absent (msgspec takes no ``Raw | None``)."""


_decode_response_facts = msgspec.json.Decoder(_ResponseFacts).decode
_decode_lifecycle = msgspec.json.Decoder(_LifecycleFacts).decode


class ResponsesCall(ProtocolCall[ResponsesRequest]):
    """One ``POST /v1/responses``, answered whole or as the Responses event sequence."""

    ENDPOINT = "responses"

    def __init__(self, deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(deps, scope, receive, send)
        self._created_at = int(time.time())
        self._previous: StoredResponse | None = None
        self._looked_up = False
        # What a failure after the first byte needs to be told in the protocol's own terms.
        self._upstream_id: str | None = None
        self._upstream_sent = 0  # events of a passed-through stream, for the next sequence number

    def _decode(self, body: bytes) -> ResponsesRequest:
        return decode_responses_request(body)

    async def _call_route(
        self, actor: ProviderActor, request: ResponsesRequest, route: Route
    ) -> None:
        previous = await self._previous_response(request)
        if actor.speaks(request.PROTOCOL):
            if previous is not None and not _held_by(previous, route.provider):
                # The upstream never saw the earlier turns: they go in the input instead.
                request = _with_history(request, await self._history(request))
            if request.stream:
                await self._pass_stream(actor, request, route)
            else:
                await self._pass_complete(actor, request, route)
            return
        chat_raw, params = translate_request(request.raw, await self._history(request))
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

    def _error_event(self, error: GatewayError) -> bytes:
        return self._failed_event(error)

    # -- the conversation so far ---------------------------------------------------------------

    async def _previous_response(self, request: ResponsesRequest) -> StoredResponse | None:
        """The stored response the request continues (None without one); a 400 when this
        client has none of that id."""
        if not self._looked_up:
            self._looked_up = True
            previous_id = request.view.previous_response_id
            if previous_id is not None:
                self._previous = await self.deps.responses.get(previous_id, self.client_id)
                if self._previous is None:
                    raise _previous_not_found(previous_id)
        return self._previous

    async def _history(self, request: ResponsesRequest) -> list[Any]:
        previous_id = request.view.previous_response_id
        if previous_id is None:
            return []
        return await self.deps.responses.conversation(previous_id, self.client_id)

    # -- passed through ----------------------------------------------------------------------

    async def _pass_complete(
        self, actor: ProviderActor, request: ResponsesRequest, route: Route
    ) -> None:
        answer = await actor.complete(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        )
        assert isinstance(answer, PassedAnswer), "a passed-through call answers with its bytes"
        self._answered(answer.usage, answer.body)
        if request.stored:
            await self._keep(request, route, answer.body, upstream_held=True)
        await self._send_whole(answer.body)

    async def _pass_stream(
        self, actor: ProviderActor, request: ResponsesRequest, route: Route
    ) -> None:
        async with actor.stream(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        ) as items:
            await self._relay_passed(items, await next_or_none(items))

    async def _on_passed(self, event: PassedEvent) -> None:
        data = event.data or b""
        if self._upstream_id is None:
            self._upstream_id = _response_id_of(data)
        self._upstream_sent += 1
        request, route = self.request, self.route
        if event.terminal and request is not None and request.stored and route is not None:
            final = _response_of(data)
            if final is not None:
                await self._keep(request, route, final, upstream_held=True)

    def _failed_event(self, error: GatewayError) -> bytes:
        """A ``response.failed`` event for a passed-through stream that ended without its own
        end: numbered after the upstream's events, for the response the upstream began."""
        response = {
            "id": self._upstream_id or new_item_id("resp"),
            "object": "response",
            "created_at": self._created_at,
            "status": "failed",
            "error": {"code": error.code or error.error_type, "message": error.message},
            "incomplete_details": None,
            "output": [],
            "usage": None,
        }
        event = {
            "type": "response.failed",
            "sequence_number": self._upstream_sent,
            "response": response,
        }
        return b"event: response.failed\ndata: " + _encode(event) + b"\n\n"

    # -- translated ----------------------------------------------------------------------------

    async def _translated_complete(
        self, actor: ProviderActor, request: ResponsesRequest, chat: ChatRequest, route: Route
    ) -> None:
        answer = await actor.complete(
            chat, route.upstream_model, self.timing, client=self._client_bucket()
        )
        translated = chat_answer(route.provider, answer)
        response = response_object(
            translated,
            request.raw,
            response_id=new_item_id("resp"),
            created_at=self._created_at,
            model=request.model,
        )
        payload = _encode(response)
        self._answered(translated.usage, payload)
        if request.stored:
            await self._keep(request, route, payload, upstream_held=False)
        await self._send_whole(payload)

    async def _translated_stream(
        self, actor: ProviderActor, request: ResponsesRequest, chat: ChatRequest, route: Route
    ) -> None:
        async with actor.stream(
            chat, route.upstream_model, self.timing, client=self._client_bucket()
        ) as items:
            item = await next_or_none(items)
            events = ResponseEventStream(
                request.raw,
                response_id=new_item_id("resp"),
                created_at=self._created_at,
                model=request.model,
            )
            await self._relay_translated(items, item, events, route.provider)
        await self._close_translated(events)

    async def _before_last_events(self, events: EventBuilder) -> None:
        request, route = self.request, self.route
        if request is not None and request.stored and route is not None:
            assert isinstance(events, ResponseEventStream)
            await self._keep(request, route, _encode(events.response), upstream_held=False)

    # -- shared ------------------------------------------------------------------------------

    async def _keep(
        self,
        request: ResponsesRequest,
        route: Route,
        response_json: bytes,
        *,
        upstream_held: bool,
    ) -> None:
        """Store the response for GET and later continuations, before the client has all of it:
        a continuation sent the moment it has finds it. A failed response, or one without an
        id, is not kept."""
        try:
            facts = _decode_response_facts(response_json)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return  # not a response object: nothing a continuation could use
        response_id = facts.id
        if not isinstance(response_id, str) or facts.status == "failed":
            return
        keep = ResponseToStore(
            id=response_id,
            client_id=self.client_id,
            model=request.model,
            provider=route.provider,
            previous_response_id=request.view.previous_response_id,
            input_items=input_items(request.raw),
            response_json=response_json,
            upstream_held=upstream_held,
        )
        # The client has its answer: storing it goes on if the client leaves now, but the call
        # does not fail for it (a later GET or continuation is told it is not found).
        with trio.move_on_after(STORE_WAIT_S, shield=True) as waited:
            try:
                await self.deps.responses.store(keep, timeout_s=STORE_WAIT_S)
            except (ValueError, TypeError, trio.TooSlowError) as exc:
                log.warning("response %s was not stored: %s", response_id, exc)
        if waited.cancelled_caught:
            log.warning("response %s was not stored: the writer stayed busy", response_id)


def _held_by(previous: StoredResponse, provider: str) -> bool:
    """Whether ``provider`` itself holds the stored response (it was passed through to it)."""
    return previous.upstream_held and previous.provider == provider


def _with_history(request: ResponsesRequest, history: list[Any]) -> ResponsesRequest:
    """The request with the conversation before it in its input instead of its id."""
    raw = dict(request.raw)
    raw.pop("previous_response_id", None)
    raw["input"] = [*_portable(history), *input_items(request.raw)]
    return request.with_raw(raw)


def _portable(items: list[Any]) -> list[Any]:
    """Earlier turns as another upstream can take them: without the item ids (which name items
    it never stored) and without reasoning items (another provider's reasoning is no input it
    accepts; the answers that followed from it are kept)."""
    portable: list[Any] = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") == "reasoning":
            continue
        portable.append({k: v for k, v in item.items() if k not in ("id", "status")})
    return portable


def _previous_not_found(previous_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Previous response with id '{previous_id}' not found: the gateway continues only the "
        "responses made through it by the same client, while they are kept.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def _response_of(data: bytes) -> bytes | None:
    """The response object a passed-through lifecycle event carries, as its JSON."""
    try:
        response = bytes(_decode_lifecycle(data).response)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return response if response.startswith(b"{") else None


def _response_id_of(data: bytes) -> str | None:
    """The response id a passed-through lifecycle event carries, if it is one."""
    response = _response_of(data)
    if response is None:
        return None
    try:
        response_id = _decode_response_facts(response).id
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return response_id if isinstance(response_id, str) else None


async def create_response(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI handler of ``POST /v1/responses``."""
    await ResponsesCall(deps, scope, receive, send).handle()
