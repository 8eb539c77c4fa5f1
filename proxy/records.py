"""The one record logged per call, whatever its outcome (design §3 step 7, ``llm_requests``)."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal, get_args

Status = Literal["ok", "error", "cancelled"]
Endpoint = Literal["chat", "responses", "messages", "embeddings"]
"""The client API a call came through: ``/v1/chat/completions``, ``/v1/responses``, ..."""
ENDPOINTS: Final[tuple[Endpoint, ...]] = get_args(Endpoint)


@dataclasses.dataclass(frozen=True, slots=True)
class RequestRecord:
    """What happened to one ``/v1`` call; token counts are None when the upstream did not say."""

    request_id: str
    ts_ms: int
    client_id: str | None
    provider: str | None
    model: str
    upstream_model: str | None
    stream: bool
    status: Status
    http_status: int
    error_type: str | None = None
    error_message: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    # Prompt tokens written to the provider's cache (Anthropic's), billed at its own rate.
    cache_write_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    has_images: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    overhead_ms: float = 0.0
    request_body: str | None = None
    response_body: str | None = None
    attempts: int = 1
    failed_attempts: str | None = None  # JSON: the fallbacks' failures before the answer
    endpoint: Endpoint = "chat"
    # The gateway process that served the call ([cluster] instance_name, per worker name/N, else
    # host:pid); the request logger stamps it, so whoever builds a record need not know it.
    instance: str | None = None

    @property
    def has_usage(self) -> bool:
        """Whether the upstream reported token counts (an unpriced call has none)."""
        return self.prompt_tokens is not None or self.completion_tokens is not None


@dataclasses.dataclass(frozen=True, slots=True)
class LiveCall(RequestRecord):
    """A logged call as live feeds carry it: the record and the instance that served it."""

    instance: str = ""

    @classmethod
    def of(cls, record: RequestRecord, instance: str) -> LiveCall:
        """``record`` served by ``instance``."""
        # Field by field into the frozen slots: the record's own values, no checks to rerun.
        live = object.__new__(cls)
        for name in _RECORD_FIELDS:
            object.__setattr__(live, name, getattr(record, name))
        object.__setattr__(live, "instance", instance)
        return live


_RECORD_FIELDS: Final = tuple(field.name for field in dataclasses.fields(RequestRecord))
