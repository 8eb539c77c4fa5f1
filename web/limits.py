"""Rate-limit decisions as HTTP: OpenAI's ``x-ratelimit-*`` headers and the 429 answer."""

from __future__ import annotations

from proxy.errors import RateLimited
from proxy.rate_limit import RateDecision, format_duration, retry_after_header
from web.asgi import Headers


def rate_limit_headers(decision: RateDecision) -> Headers:
    """The budget headers OpenAI sends: requests (of the bucket the decision reports on) and
    tokens (the client's tokens per minute), each only when such a limit applies."""
    headers: Headers = []
    if decision.limit is not None:
        headers += [
            (b"x-ratelimit-limit-requests", str(decision.limit).encode()),
            (b"x-ratelimit-remaining-requests", str(decision.remaining).encode()),
            (b"x-ratelimit-reset-requests", format_duration(decision.reset_s).encode()),
        ]
    if decision.token_limit is not None:
        headers += [
            (b"x-ratelimit-limit-tokens", str(decision.token_limit).encode()),
            (b"x-ratelimit-remaining-tokens", str(decision.token_remaining).encode()),
            (b"x-ratelimit-reset-tokens", format_duration(decision.token_reset_s).encode()),
        ]
    return headers


def rate_limited(decision: RateDecision, bucket: str, tokens: int = 0) -> RateLimited:
    """The 429 for a denied call of ``tokens`` (its reservation), with ``retry-after``
    (openai-python honours it) unless no wait would help."""
    if decision.reason == "request too large":
        # OpenAI answers this 429 too ("Request too large ... on tokens per min"); retrying is
        # useless, so there is no retry-after, and x-should-retry stops the official SDKs.
        return RateLimited(
            f"Request too large for client '{bucket}' on tokens per minute: limit "
            f"{decision.token_limit}, this call needs {tokens} (an estimate of its prompt plus "
            "max_tokens or max_completion_tokens). Reduce the prompt or max_tokens, or ask for "
            "a higher limit.",
            headers={"x-should-retry": "false"},
        )
    wait = retry_after_header(decision.retry_after_s)
    if decision.reason == "global requests":
        what = f"the gateway's requests per minute (limit {decision.limit})"
    elif decision.reason == "client tokens":
        what = (
            f"tokens per minute for client '{bucket}' (limit {decision.token_limit}): this "
            f"call reserves {tokens}, {decision.token_remaining} are left"
        )
    else:
        what = f"requests per minute for client '{bucket}' (limit {decision.limit})"
    return RateLimited(
        f"Rate limit reached for {what}. Please try again in {wait}s.",
        headers={"retry-after": wait},
    )
