"""Which calls an analytics query counts: the filter by client, provider, model, endpoint and
instance, and the range.

Both sources take the same filter: the rollup stores a missing client or provider as ``''``, the
request log as NULL, and each source's WHERE clause maps the filter's ``""`` to its own form.
Ranges are half-open, ``[since_ms, until_ms)``; an empty or inverted one is refused with a
message fit for a 400 response.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from proxy.records import ENDPOINTS

__all__ = ["NO_FILTER", "UsageFilter", "check_range"]


@dataclasses.dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which calls to count; None matches any value.

    ``client_id=""`` selects calls made without a client (anonymous), ``provider=""`` calls that
    never reached a provider. ``model`` is the model name the client asked for. ``endpoint`` is
    the client API (one of ``proxy.records.ENDPOINTS``), ``instance`` the gateway process that
    served the call; ``instance=""`` selects calls whose instance is unknown (logged before
    schema version 8).
    """

    client_id: str | None = None
    provider: str | None = None
    model: str | None = None
    endpoint: str | None = None
    instance: str | None = None

    def __post_init__(self) -> None:
        """Refuse an endpoint that no call can have, with a message fit for a 400 response."""
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(
                f"'endpoint' must be one of {', '.join(ENDPOINTS)}; got {self.endpoint!r}."
            )


NO_FILTER: Final = UsageFilter()


def check_range(since_ms: int, until_ms: int) -> None:
    """Refuse an empty or inverted range."""
    if since_ms >= until_ms:
        raise ValueError("the range is empty: 'from' must be before 'to'")
