"""``POST /v1/embeddings``: embeddings as part of a ``/v1`` call (design §3).

Passed through to an upstream that serves OpenAI's embeddings (OpenAI: the body as sent, the
answer as the upstream's bytes); every other upstream gets its own embeddings call, answered in
OpenAI's shape by its adapter, floats or base64 as the client asked. Never streamed. The vectors
are not kept in the request log, even with ``store_bodies``: they are the bulk of the answer and
no use to read there.
"""

from __future__ import annotations

from actors.provider import ProviderActor
from proxy.embeddings import EmbeddingsRequest, decode_embeddings_request
from proxy.errors import GatewayError
from proxy.providers.base import PassedAnswer
from proxy.routing import Route
from web.asgi import Receive, Scope, Send
from web.v1_call import V1Call
from web.v1_deps import V1Deps

__all__ = ["EmbeddingsCall", "create_embeddings"]


class EmbeddingsCall(V1Call[EmbeddingsRequest]):
    """One ``POST /v1/embeddings``, answered whole."""

    ENDPOINT = "embeddings"

    def _decode(self, body: bytes) -> EmbeddingsRequest:
        return decode_embeddings_request(body)

    async def _call_route(
        self, actor: ProviderActor, request: EmbeddingsRequest, route: Route
    ) -> None:
        answer = await actor.complete(
            request, route.upstream_model, self.timing, client=self._client_bucket()
        )
        assert isinstance(answer, PassedAnswer), "embeddings are answered as bytes"
        self._answered(answer.usage, None)  # the vectors are no use in the log
        await self._send_whole(answer.body)

    async def _send_error_after_start(self, error: GatewayError) -> None:
        # The answer is one body sent at once: once it started, nothing is left to tell.
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def create_embeddings(deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI handler of ``POST /v1/embeddings``."""
    await EmbeddingsCall(deps, scope, receive, send).handle()
