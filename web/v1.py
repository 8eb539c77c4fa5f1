"""The ``/v1`` ASGI application: the OpenAI-compatible surface, dispatched without a framework."""

from __future__ import annotations

from urllib.parse import unquote

from proxy.errors import GatewayError, MethodNotAllowed, NotFound
from web.asgi import Receive, Scope, Send, header
from web.auth import Caller
from web.v1_chat import chat_completions
from web.v1_count_tokens import count_message_tokens
from web.v1_deps import V1Deps
from web.v1_embeddings import create_embeddings
from web.v1_messages import create_message, send_anthropic_error
from web.v1_models import models_body
from web.v1_models_anthropic import anthropic_models_body
from web.v1_responses import create_response
from web.v1_small import small_answer
from web.v1_stored_responses import stored_response


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
    if path in ("/v1/embeddings", "/v1/embeddings/"):
        if method == "POST":
            await create_embeddings(deps, scope, receive, send)
            return
        await _small(deps, scope, receive, send, None, MethodNotAllowed(f"Use POST for {path}."))
        return
    if path in ("/v1/messages", "/v1/messages/"):
        if method == "POST":
            await create_message(deps, scope, receive, send)
            return
        await _small(deps, scope, receive, send, None, MethodNotAllowed(f"Use POST for {path}."))
        return
    if path in ("/v1/messages/count_tokens", "/v1/messages/count_tokens/"):
        await count_message_tokens(deps, scope, receive, send)
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
            f"Unknown path {path}: this gateway serves /v1/chat/completions, /v1/responses, "
            "/v1/messages, /v1/embeddings and /v1/models."
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

    if header(scope, b"anthropic-version") is not None:
        # An Anthropic client (Claude Code's model picker): its own paged shape and errors.

        async def anthropic_models(caller: Caller, body: bytes) -> bytes:
            return await anthropic_models_body(deps, scope, model)

        await small_answer(
            deps,
            scope,
            receive,
            send,
            ("GET",),
            anthropic_models,
            error,
            send_failure=send_anthropic_error,
        )
        return

    async def models(caller: Caller, body: bytes) -> bytes:
        return await models_body(deps, model)

    await small_answer(deps, scope, receive, send, ("GET",), models, error)
