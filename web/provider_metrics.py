"""The providers' part of ``/metrics``: concurrency, upstream calls, breakers, reachability.

Read from each :class:`~actors.provider.ProviderActor`'s ``statistics()`` at scrape time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from web.prometheus_text import Exposition, Labels

if TYPE_CHECKING:
    from web.observed import ObservedParts

BREAKER_STATES: Final = ("closed", "open", "half_open")


def write_provider_metrics(out: Exposition, parts: ObservedParts) -> None:
    """Every provider's gauges and counters: slots, calls, breaker, reachability."""
    stats = [actor.statistics() for _, actor in sorted(parts.providers.items())]

    def each(field: str) -> list[tuple[Labels, float]]:
        return [((("provider", s.name),), getattr(s, field)) for s in stats]

    out.gauge("llm_proxy_provider_in_flight", "Upstream calls in flight.", each("in_flight"))
    out.gauge(
        "llm_proxy_provider_waiting",
        "Calls waiting for one of the provider's concurrency slots.",
        each("waiting"),
    )
    out.gauge(
        "llm_proxy_provider_max_concurrency",
        "The provider's concurrency limit.",
        each("max_concurrency"),
    )
    out.counter(
        "llm_proxy_upstream_calls_total",
        "Upstream calls made, fallback attempts included.",
        each("calls"),
    )
    out.counter(
        "llm_proxy_upstream_errors_total",
        "Upstream calls that failed with a 5xx-class error (timeouts, refusals, garbage).",
        each("errors"),
    )
    out.gauge(
        "llm_proxy_breaker_state",
        "Circuit breaker state: 1 for the current one of closed, open, half_open; 0 otherwise.",
        [
            ((("provider", s.name), ("state", state)), int(s.breaker_state == state))
            for s in stats
            for state in BREAKER_STATES
        ],
    )
    out.counter(
        "llm_proxy_breaker_trips_total", "Times the circuit breaker opened.", each("breaker_trips")
    )
    out.gauge(
        "llm_proxy_provider_reachable",
        "1 when the provider's last call or probe reached it, 0 when it did not; absent while "
        "unknown (neither called nor probed yet).",
        [
            ((("provider", s.name),), int(s.reachability.state == "reachable"))
            for s in stats
            if s.reachability.state != "unknown"
        ],
    )
    out.gauge(
        "llm_proxy_provider_reachability_age_seconds",
        "Seconds since the provider's last call or probe (what llm_proxy_provider_reachable "
        "is based on).",
        [
            ((("provider", s.name),), s.reachability.age_s)
            for s in stats
            if s.reachability.age_s is not None
        ],
    )
