"""Rate-limit decisions as HTTP: OpenAI's ``x-ratelimit-*`` headers and the 429 answer."""

from __future__ import annotations

from proxy.errors import RateLimited
from proxy.rate_limit import RateDecision, format_duration, retry_after_header
from web.asgi import Headers


def rate_limit_headers(decision: RateDecision) -> Headers:
    """The request-budget headers OpenAI sends, for the bucket the decision reports on."""
    if decision.limit is None:
        return []  # nothing limits this caller: there is no budget to describe
    return [
        (b"x-ratelimit-limit-requests", str(decision.limit).encode()),
        (b"x-ratelimit-remaining-requests", str(decision.remaining).encode()),
        (b"x-ratelimit-reset-requests", format_duration(decision.reset_s).encode()),
    ]


def rate_limited(decision: RateDecision, bucket: str) -> RateLimited:
    """The 429 for a denied request, with ``retry-after`` (openai-python honours it)."""
    wait = retry_after_header(decision.retry_after_s)
    if decision.reason == "global requests":
        what = f"the gateway's requests per minute (limit {decision.limit})"
    elif decision.reason == "client tokens":
        what = f"tokens per minute for client '{bucket}'"
    else:
        what = f"requests per minute for client '{bucket}' (limit {decision.limit})"
    return RateLimited(
        f"Rate limit reached for {what}. Please try again in {wait}s.",
        headers={"retry-after": wait},
    )
