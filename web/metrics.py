"""``GET /metrics``: the gateway in Prometheus' text exposition format (version 0.0.4).

Two sources. Counters and histograms of calls come from :class:`Metrics`, which the
RequestLogger tells of every record it accounts (priced, so costs are known), synchronously and
in order. Gauges (queues, calls in flight, breakers, sessions, memory) are read from the actors'
``statistics()`` at scrape time. The text is written here, without ``prometheus_client``: it is a
few dozen lines, and the client's global registry would only get in the way of several gateways
in one test process.

Labels stay few, whatever clients send: ``provider`` is a configured provider (``none`` for a
call that never routed: bad key, bad body, unknown model), ``type`` a gateway error type, and
``model`` the name the client asked for — but only for calls that routed, only while fewer than
:data:`MAX_MODELS` names have been seen, and only for short printable names; anything else is
counted as ``other``. ``endpoint`` (on the request and error counters only) is one of the
client APIs the gateway serves (``chat``, ``responses``, ...), else ``other``. No client id, key or
free text is ever a label.

The endpoint needs no sign-in and holds no secret, but it does describe traffic: bind the
gateway to loopback or a private address, or let the firewall (or the reverse proxy in front)
keep ``/metrics`` to the Prometheus server.
"""

from __future__ import annotations

import re
import time
from functools import partial
from typing import TYPE_CHECKING, Final

import trio
from quart import Response
from quart_trio import QuartTrio

from proxy import __version__
from proxy.image_budget import ImageBudgetStatistics
from proxy.records import ENDPOINTS, RequestRecord
from storage.writer import WriterStatistics
from web.budget_metrics import write_budget_metrics
from web.fleet_report import write_fleet_metrics
from web.prometheus_text import Exposition, Histogram, Labels
from web.sibling_metrics import SiblingMetrics

if TYPE_CHECKING:
    from web.observed import ObservedParts

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_MODELS: Final = 200
MAX_LABEL_CHARS: Final = 128
OTHER: Final = "other"
NONE: Final = "none"
TOKEN_KINDS: Final = ("prompt", "completion", "reasoning", "cached", "cache_write")
BREAKER_STATES: Final = ("closed", "open", "half_open")
_ERROR_TYPE = re.compile(r"[a-z_]{1,64}")


class Metrics:
    """Counters of logged calls, updated by the RequestLogger as it accounts each record."""

    def __init__(self, *, max_models: int = MAX_MODELS) -> None:
        self._max_models = max_models
        self._models: set[str] = set()
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.errors: dict[tuple[str, str, str, str], int] = {}
        self.tokens: dict[tuple[str, str, str], int] = {}
        self.cost: dict[tuple[str, str], float] = {}
        self.duration: dict[str, Histogram] = {}
        self.ttft: dict[str, Histogram] = {}

    @property
    def models(self) -> int:
        """Distinct model names counted under their own name (at most ``max_models``)."""
        return len(self._models)

    def observe(self, record: RequestRecord) -> None:
        """Count one logged call (never blocks; called on the logger's task)."""
        provider = record.provider or NONE
        model = self._model_label(record)
        endpoint = record.endpoint if record.endpoint in ENDPOINTS else OTHER
        outcome = (provider, model, record.status, endpoint)
        self.requests[outcome] = self.requests.get(outcome, 0) + 1
        if record.status == "error":
            error_type = record.error_type or "unknown"
            if not _ERROR_TYPE.fullmatch(error_type):
                error_type = OTHER
            error = (provider, model, error_type, endpoint)
            self.errors[error] = self.errors.get(error, 0) + 1
        counts = (
            record.prompt_tokens,
            record.completion_tokens,
            record.reasoning_tokens,
            record.cached_tokens,
            record.cache_write_tokens,
        )
        for kind, count in zip(TOKEN_KINDS, counts, strict=True):
            if count is not None:
                tokens = (provider, model, kind)
                self.tokens[tokens] = self.tokens.get(tokens, 0) + count
        if record.cost_usd is not None:
            pair = (provider, model)
            self.cost[pair] = self.cost.get(pair, 0.0) + record.cost_usd
        _histogram(self.duration, provider).observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            _histogram(self.ttft, provider).observe(record.ttft_ms / 1000)

    def _model_label(self, record: RequestRecord) -> str:
        """The asked-for name if the call routed and the name may be a label, else a bucket."""
        if record.provider is None:
            return NONE
        name = record.model
        if name in self._models:
            return name
        if (
            len(self._models) >= self._max_models
            or not name
            or len(name) > MAX_LABEL_CHARS
            or not name.isprintable()
        ):
            return OTHER
        self._models.add(name)
        return name

    def write(self, out: Exposition) -> None:
        """The call counters and histograms."""
        out.family(
            "llm_proxy_requests_total",
            "counter",
            "Calls logged, by provider, model asked for, outcome (ok, error, cancelled) and the"
            " client API they came through (chat, responses, ...).",
        )
        for (provider, model, status, endpoint), value in sorted(self.requests.items()):
            out.sample(
                "llm_proxy_requests_total",
                (
                    ("provider", provider),
                    ("model", model),
                    ("status", status),
                    ("endpoint", endpoint),
                ),
                value,
            )
        out.family(
            "llm_proxy_errors_total",
            "counter",
            "Calls that failed, by gateway error type and client API.",
        )
        for (provider, model, error_type, endpoint), value in sorted(self.errors.items()):
            out.sample(
                "llm_proxy_errors_total",
                (
                    ("provider", provider),
                    ("model", model),
                    ("type", error_type),
                    ("endpoint", endpoint),
                ),
                value,
            )
        out.family(
            "llm_proxy_tokens_total",
            "counter",
            "Tokens reported by upstreams, by kind (prompt, completion, reasoning, cached, "
            "cache_write).",
        )
        for (provider, model, kind), value in sorted(self.tokens.items()):
            out.sample(
                "llm_proxy_tokens_total",
                (("provider", provider), ("model", model), ("kind", kind)),
                value,
            )
        out.family(
            "llm_proxy_cost_usd_total", "counter", "Priced cost of chat calls in US dollars."
        )
        for (provider, model), cost in sorted(self.cost.items()):
            out.sample("llm_proxy_cost_usd_total", (("provider", provider), ("model", model)), cost)
        out.histogram(
            "llm_proxy_request_duration_seconds",
            "Chat call duration, first byte in to last byte out, by provider.",
            self.duration,
        )
        out.histogram(
            "llm_proxy_time_to_first_token_seconds",
            "Time from the request to the first chunk (the whole answer when not streaming).",
            self.ttft,
        )
        out.family(
            "llm_proxy_model_labels",
            "gauge",
            f"Model names counted under their own name; past {self._max_models}, 'other'.",
        )
        out.sample("llm_proxy_model_labels", (), len(self._models))


def _histogram(table: dict[str, Histogram], provider: str) -> Histogram:
    histogram = table.get(provider)
    if histogram is None:
        histogram = table[provider] = Histogram()
    return histogram


def rss_bytes() -> int | None:
    """Resident memory from ``/proc/self/status`` (blocking: call in a worker thread)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    amount, _, unit = line.split(":", 1)[1].strip().partition(" ")
                    scale = {"kB": 1024, "mB": 1024**2, "gB": 1024**3}.get(unit.strip(), 1)
                    return int(amount) * scale
    except (OSError, ValueError):
        return None
    return None


def exposition(calls: Metrics, parts: ObservedParts, rss: int | None) -> str:
    """The whole ``/metrics`` page: call counters, then the actors' state now."""
    return build_exposition(calls, parts, rss).text()


async def own_exposition(calls: Metrics, parts: ObservedParts) -> Exposition:
    """This process's exposition now (what a worker's metrics socket serves its siblings)."""
    rss = await trio.to_thread.run_sync(rss_bytes)
    return build_exposition(calls, parts, rss)


def build_exposition(calls: Metrics, parts: ObservedParts, rss: int | None) -> Exposition:
    """The families of :func:`exposition`, before they are text."""
    out = Exposition()
    calls.write(out)
    uptime_s = time.monotonic() - parts.started_at
    out.gauge("llm_proxy_build_info", "The running version.", [((("version", __version__),), 1)])
    out.gauge("llm_proxy_uptime_seconds", "Seconds since the gateway started.", [((), uptime_s)])
    out.gauge(
        "process_start_time_seconds",
        "When the gateway started serving, in seconds since the Unix epoch.",
        [((), round(time.time() - uptime_s, 3))],
    )
    if rss is not None:
        out.gauge("process_resident_memory_bytes", "Resident memory (VmRSS).", [((), rss)])
    out.gauge(
        "llm_proxy_requests_in_flight",
        "Model calls (/v1 chat, responses, messages, embeddings) being answered now.",
        [((), parts.in_flight.count)],
    )
    _connections(out, parts)
    logger, writer = parts.logger.statistics(), parts.writer.statistics()
    out.gauge(
        "llm_proxy_queue_depth",
        "Records waiting: in the request logger's inbox (logger), and accepted by the storage "
        "writer but not stored yet (writer).",
        [((("queue", "logger"),), logger.queued), ((("queue", "writer"),), writer.queued)],
    )
    _providers(out, parts)
    _writer(out, writer)
    if parts.budgets is not None:
        write_budget_metrics(out, parts.budgets)
    events = parts.events.statistics()
    out.gauge(
        "llm_proxy_live_subscribers",
        "Open live feeds: logged calls (requests) and gateway events (events).",
        [
            ((("feed", "requests"),), logger.subscribers),
            ((("feed", "events"),), events.subscribers),
        ],
    )
    out.counter(
        "llm_proxy_live_events_dropped_total",
        "Items a slow live subscriber lost (the gateway never waits for one).",
        [
            ((("feed", "requests"),), logger.events_dropped),
            ((("feed", "events"),), events.dropped),
        ],
    )
    retention = parts.retention.statistics()
    out.counter(
        "llm_proxy_retention_rows_deleted_total",
        "Logged calls deleted for being older than [logging] retention_days.",
        [((), retention.rows_deleted)],
    )
    out.counter(
        "llm_proxy_retention_responses_deleted_total",
        "Stored /v1/responses responses deleted past [responses] retention_days.",
        [((), retention.responses_deleted)],
    )
    out.counter(
        "llm_proxy_retention_errors_total",
        "Retention passes that failed (retried at the next one).",
        [((), retention.errors)],
    )
    out.gauge(
        "llm_proxy_sessions_active",
        "Dashboard sessions alive.",
        [((), parts.sessions.statistics().active)],
    )
    _images(out, parts.images.statistics())
    limiter = parts.limiter.statistics()
    out.counter(
        "llm_proxy_rate_limit_decisions_total",
        "Rate limiter decisions: calls allowed and denied (429).",
        [
            ((("decision", "allowed"),), limiter.allowed),
            ((("decision", "denied"),), limiter.denied),
        ],
    )
    out.gauge(
        "llm_proxy_rate_limit_tokens_reserved",
        "Tokens per minute reserved by calls admitted and not settled yet.",
        [((), limiter.tokens_reserved)],
    )
    out.counter(
        "llm_proxy_rate_limit_redis_round_trips_total",
        "Round trips to Redis for fleet-wide rate limits (each a batch of admissions and settles).",
        [((), limiter.round_trips)],
    )
    out.counter(
        "llm_proxy_rate_limit_redis_batched_admissions_total",
        "Admissions decided by those round trips (divided by them: admissions per round trip).",
        [((), limiter.batched_admissions)],
    )
    out.gauge(
        "llm_proxy_rate_limit_redis_largest_batch",
        "The most admissions one round trip to Redis has carried, since start.",
        [((), limiter.largest_batch)],
    )
    out.counter(
        "llm_proxy_rate_limit_decided_locally_total",
        "Calls decided by this process's own limits because Redis was down (on_redis_down local).",
        [((), limiter.decided_locally)],
    )
    out.counter(
        "llm_proxy_rate_limit_refused_store_down_total",
        "Calls refused with 503 because Redis was down (on_redis_down refuse).",
        [((), limiter.refused_store_down)],
    )
    write_fleet_metrics(out, parts)
    return out


def _connections(out: Exposition, parts: ObservedParts) -> None:
    stats = parts.connections.statistics()
    out.gauge("llm_proxy_connections_open", "Open client connections.", [((), stats.open)])
    out.gauge(
        "llm_proxy_connections_max",
        "The limit on open client connections (server.max_connections, or derived).",
        [((), stats.limit)],
    )
    out.counter(
        "llm_proxy_connections_shed_total",
        "Connections closed at the limit: idle ones closed to make room (idle_closed), new ones "
        "closed at accept because every connection was busy (refused).",
        [
            ((("reason", "idle_closed"),), stats.idle_closed),
            ((("reason", "refused"),), stats.refused),
        ],
    )


def _images(out: Exposition, images: ImageBudgetStatistics) -> None:
    out.gauge(
        "llm_proxy_image_bytes_reserved",
        "Memory reserved for fetched images until their upstream calls have them (as base64).",
        [((), images.bytes_reserved)],
    )
    out.gauge(
        "llm_proxy_image_bytes_peak",
        "The most memory ever reserved for fetched images at once, since start.",
        [((), images.peak_bytes_reserved)],
    )
    out.gauge(
        "llm_proxy_image_fetches",
        "Image fetches running (running) and waiting for a slot (waiting).",
        [
            ((("state", "running"),), images.fetches_in_flight),
            ((("state", "waiting"),), images.fetches_waiting),
        ],
    )
    out.counter(
        "llm_proxy_image_refusals_total",
        "Calls refused for image memory or fetch slots: the gateway's (503) or a client's (429).",
        [
            ((("kind", "gateway"),), images.refused_budget),
            ((("kind", "client"),), images.refused_client_share),
        ],
    )


def _providers(out: Exposition, parts: ObservedParts) -> None:
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


def _writer(out: Exposition, writer: WriterStatistics) -> None:
    out.gauge(
        "llm_proxy_writer_batch_rows",
        "Records in the storage writer's last batch.",
        [((), writer.last_batch_rows)],
    )
    out.family(
        "llm_proxy_writer_flush_seconds",
        "summary",
        "Time to store a batch of records (one transaction, retries excluded).",
    )
    out.sample("llm_proxy_writer_flush_seconds_sum", (), writer.flush_ms_total / 1000)
    out.sample("llm_proxy_writer_flush_seconds_count", (), writer.batches)
    out.gauge(
        "llm_proxy_writer_last_flush_seconds",
        "Time the last batch took to store.",
        [((), writer.last_flush_ms / 1000)],
    )
    out.gauge(
        "llm_proxy_writer_max_flush_seconds",
        "The slowest batch since start.",
        [((), writer.max_flush_ms / 1000)],
    )
    out.counter(
        "llm_proxy_writer_rows_written_total", "Records stored.", [((), writer.rows_written)]
    )
    out.counter(
        "llm_proxy_writer_rows_rejected_total",
        "Records the database refused (logged and dropped).",
        [((), writer.rows_rejected)],
    )
    out.counter(
        "llm_proxy_writer_errors_total",
        "Failed write transactions (each retried).",
        [((), writer.write_errors)],
    )
    out.counter(
        "llm_proxy_db_busy_waits_total",
        "Waits for the SQLite write lock another process held.",
        [((), writer.busy_waits)],
    )
    out.counter(
        "llm_proxy_db_busy_timeouts_total",
        "Lock waits that reached the busy timeout (the write was retried).",
        [((), writer.busy_timeouts)],
    )
    out.counter(
        "llm_proxy_db_busy_wait_seconds_total",
        "Time spent waiting for the SQLite write lock.",
        [((), writer.busy_wait_s)],
    )
    out.gauge(
        "llm_proxy_db_up",
        "1 while the database takes writes, 0 during an outage (records are buffered).",
        [((), 1 if writer.up else 0)],
    )
    out.gauge(
        "llm_proxy_db_buffered_records",
        "Records held in memory during a database outage, waiting to be stored.",
        [((), writer.buffered)],
    )
    out.counter(
        "llm_proxy_db_records_dropped_total",
        "Records dropped, never stored, because an outage outlasted the outage buffer.",
        [((), writer.records_dropped)],
    )


def register_metrics(
    app: QuartTrio,
    calls: Metrics,
    parts: ObservedParts,
    siblings: SiblingMetrics | None = None,
) -> None:
    """Add ``GET /metrics`` to the Quart app (no sign-in: it holds no secret).

    ``siblings``: a worker of ``[server] workers``, which answers for every worker of the port.
    """

    @app.get("/metrics")
    async def metrics() -> Response:
        # /proc is no disk, but it is file I/O all the same: off the trio thread.
        rss = await trio.to_thread.run_sync(rss_bytes)
        if siblings is not None:
            page = await siblings.page(partial(build_exposition, calls, parts, rss))
            return Response(page, status=200, content_type=CONTENT_TYPE)
        return Response(exposition(calls, parts, rss), status=200, content_type=CONTENT_TYPE)
