"""A provider's connection test: one real, minimal streaming call, timed, never raising."""

from __future__ import annotations

import dataclasses
import logging
from time import perf_counter
from typing import Final

import msgspec
import trio

from actors.provider import ProviderActor
from actors.provider_backend import CallTiming
from proxy.chat import decode_chat_request
from proxy.errors import GatewayError
from proxy.providers.base import PassedEvent, StreamItem

log = logging.getLogger("llm_proxy.probe")

PROBE_TIMEOUT_S: Final = 30.0
PROBE_MAX_TOKENS: Final = 16
MAX_TEXT: Final = 200  # enough to see the upstream answered; the rest is not the point


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeResult:
    """What the test call found: a timed answer, or the upstream's error."""

    ok: bool
    model: str
    latency_ms: float | None = None
    first_token_ms: float | None = None
    text: str | None = None
    status: int | None = None
    error: str | None = None
    code: str | None = None

    def to_json(self) -> dict[str, object]:
        """The answer of ``POST /api/providers/{name}/test``."""
        if self.ok:
            return {
                "ok": True,
                "model": self.model,
                "latency_ms": self.latency_ms,
                "first_token_ms": self.first_token_ms,
                "text": self.text,
            }
        return {
            "ok": False,
            "model": self.model,
            "status": self.status,
            "error": self.error,
            "code": self.code,
        }


async def probe(
    actor: ProviderActor, model: str, *, timeout_s: float = PROBE_TIMEOUT_S
) -> ProbeResult:
    """Ask ``actor`` for a streamed answer to "ping" with ``model``; report how it went."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": PROBE_MAX_TOKENS,
        "stream": True,
    }
    started = perf_counter()
    first: float | None = None
    answered = model
    pieces: list[str] = []
    try:
        request = decode_chat_request(msgspec.json.encode(body))
        with trio.move_on_after(timeout_s) as deadline:
            async with actor.stream(request, model, CallTiming()) as chunks:
                async for item in chunks:
                    if first is None:
                        first = perf_counter()
                        answered = _model_of(item) or model
                    if isinstance(item, PassedEvent):
                        pieces.append(item.text or "")
                    else:
                        pieces.extend(c.delta.content for c in item.choices if c.delta.content)
    except GatewayError as exc:
        # Already scrubbed of configured secrets by the actor, like every upstream error.
        return ProbeResult(False, model, status=exc.status, error=exc.message, code=exc.code)
    except Exception as exc:
        # A bug of ours, not the upstream's answer: logged with its traceback, told briefly.
        log.exception("provider=%s test call failed unexpectedly", actor.name)
        return ProbeResult(
            False, model, status=502, error=f"The test call failed: {type(exc).__name__}."
        )
    if deadline.cancelled_caught:
        return ProbeResult(
            False,
            model,
            status=504,
            error=f"Upstream {actor.name} did not finish answering within {timeout_s:g} s.",
            code="upstream_timeout",
        )
    return ProbeResult(
        True,
        answered,
        latency_ms=(perf_counter() - started) * 1000,
        first_token_ms=(first - started) * 1000 if first is not None else None,
        # The reply is upstream text shown on the dashboard: an echo of a key stops here too.
        text=actor.scrubber.scrub("".join(pieces)[:MAX_TEXT]),
    )


def _model_of(item: StreamItem) -> str | None:
    """The model an upstream says answered, from its first chunk."""
    if not isinstance(item, PassedEvent):
        return item.model
    try:
        document = msgspec.json.decode(item.data or b"{}")
    except (ValueError, RecursionError):
        return None  # the stream's parser read it; a model name is only shown
    model = document.get("model") if isinstance(document, dict) else None
    return model if isinstance(model, str) else None
