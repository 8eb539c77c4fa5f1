"""How this instance reports on the fleet: Redis up or down (the degraded state), the live
instances, the fleet feed — as health JSON, ``/metrics`` families and the dashboard's banner."""

from __future__ import annotations

import time

import msgspec

from actors.redis_link import RedisLink
from web.observed import ObservedParts
from web.prometheus_text import Exposition


def redis_json(link: RedisLink | None) -> dict[str, object] | None:
    """Redis as this instance sees it; None when no Redis is configured (a single process)."""
    if link is None:
        return None
    stats = link.statistics()
    policy = "refuse" if link.refuses else "local"
    down_since_ms = None if stats.down_since is None else int(stats.down_since * 1000)
    summary = "up"
    if down_since_ms is not None and not stats.up:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(down_since_ms / 1000))
        summary = f"down since {since}, policy {policy}"
    return {
        "summary": summary,  # "up", or "down since 2026-12-03T10:42:00Z, policy local"
        "up": stats.up,
        "down_since_ms": down_since_ms,
        "policy": policy,  # what this instance does while Redis is down ([cluster] on_redis_down)
        "outages": stats.outages,
        "failed_calls": stats.failed_calls,
        "calls": stats.calls,
    }


def cluster_json(parts: ObservedParts) -> dict[str, object]:
    """What the dashboard's banner reads on every page: this instance and its Redis."""
    return {"instance": parts.instance, "redis": redis_json(parts.redis)}


def instances_json(parts: ObservedParts) -> list[dict[str, object]]:
    """The live instances (this one alone without Redis), each marked whether it is this one."""
    if parts.presence is None:
        return [{"name": parts.instance, "pid": None, "this": True}]
    return [
        {**msgspec.structs.asdict(info), "this": info.name == parts.instance}
        for info in parts.presence.instances()
    ]


def refuses_while_down(parts: ObservedParts) -> bool:
    """Whether Redis is down and the policy is to refuse model calls (``/readyz`` says 503)."""
    link = parts.redis
    return link is not None and link.refuses and not link.up


def write_fleet_metrics(out: Exposition, parts: ObservedParts) -> None:
    """This instance's name, its Redis, the live instances and the fleet feed's counters; none
    of them without Redis (a single process's page stays as it was)."""
    link = parts.redis
    if link is None:
        return
    out.gauge(
        "llm_proxy_instance_info",
        "This process's name in the fleet ([cluster] instance_name, or host:pid).",
        [((("instance", parts.instance),), 1)],
    )
    stats = link.statistics()
    out.gauge("llm_proxy_redis_up", "Whether Redis answers (0: degraded).", [((), int(stats.up))])
    out.counter(
        "llm_proxy_redis_outages_total", "Times Redis became unreachable.", [((), stats.outages)]
    )
    out.counter(
        "llm_proxy_redis_failed_calls_total",
        "Redis round trips that failed or were not tried because Redis was down.",
        [((), stats.failed_calls)],
    )
    if parts.presence is not None:
        out.gauge(
            "llm_proxy_fleet_instances",
            "Live instances at the last heartbeat (this one included).",
            [((), parts.presence.statistics().instances)],
        )
    if parts.fleet_feed is not None:
        feed = parts.fleet_feed.statistics()
        out.counter(
            "llm_proxy_fleet_feed_calls_total",
            "Calls on the fleet's live feed: published by this instance, relayed from others, "
            "dropped (buffer full or Redis down).",
            [
                ((("outcome", "published"),), feed.calls_published),
                ((("outcome", "relayed"),), feed.calls_relayed),
                ((("outcome", "dropped"),), feed.calls_dropped),
            ],
        )
        out.counter(
            "llm_proxy_fleet_feed_publishes_total",
            "PUBLISH round trips of the fleet's live feed (each a batch of calls).",
            [((), feed.batches_published)],
        )
