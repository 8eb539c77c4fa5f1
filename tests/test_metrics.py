"""``GET /metrics``: real calls through the gateway, then the exposition parsed line by line."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import openai
import pytest
import trio

from proxy.records import RequestRecord
from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, CLIENT_KEY, StartGateway, sdk, signed_in
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, server_error
from web.metrics import CONTENT_TYPE, MAX_MODELS, Metrics
from web.prometheus_text import BUCKETS_S, Exposition, escape_label, format_value

HELLO = [{"role": "user", "content": "hello there gateway"}]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _labels(text: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad labels {text!r} at {position}"
        assert match[1] not in labels, f"label {match[1]} twice in {text!r}"
        labels[match[1]] = _unescape(match[2])
        position = match.end()
    return labels


def parse(page: str) -> tuple[dict[str, str], list[Sample]]:
    """Every line checked against the text format 0.0.4; the families' types and the samples."""
    assert page.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: list[Sample] = []
    finished: set[str] = set()  # families whose samples are over (each family is contiguous)
    current: str | None = None
    for line in page.splitlines():
        if line.startswith("# HELP"):
            match = _HELP.match(line)
            assert match, line
            assert match[1] not in helped, f"HELP twice: {line}"
            helped.add(match[1])
            continue
        if line.startswith("# TYPE"):
            match = _TYPE.match(line)
            assert match, line
            assert match[1] not in types, f"TYPE twice: {line}"
            types[match[1]] = match[2]
            if current is not None:
                finished.add(current)
            current = match[1]
            continue
        assert not line.startswith("#"), f"unexpected comment {line!r}"
        assert line.strip(), "no blank lines"
        match = _SAMPLE.match(line)
        assert match, f"bad sample line {line!r}"
        name = match[1]
        family = _family(name, types)
        assert family == current, f"{name} outside its family"
        assert family not in finished, f"{name} after its family ended"
        value = float(match[3])  # also "+Inf", "NaN"
        samples.append(Sample(name, _labels(match[2] or ""), value))
    assert helped == set(types), "every family has HELP and TYPE"
    return types, samples


def _family(name: str, types: Mapping[str, str]) -> str:
    if name in types:
        return name
    for family, kind in types.items():
        if any(name == family + suffix for suffix in _SUFFIXES.get(kind, ())):
            return family
    raise AssertionError(f"sample {name} has no TYPE line")


def check_histograms(types: Mapping[str, str], samples: list[Sample]) -> int:
    """Buckets cumulative and increasing in ``le``, +Inf equal to _count; returns series seen."""
    series = 0
    for family, kind in types.items():
        if kind != "histogram":
            continue
        groups: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
        for sample in samples:
            if sample.name == family + "_bucket":
                key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                groups.setdefault(key, []).append(sample)
        for key, buckets in groups.items():
            series += 1
            bounds = [float(b.labels["le"]) for b in buckets]
            assert bounds == sorted(bounds)
            assert bounds[-1] == math.inf
            assert bounds[:-1] == list(BUCKETS_S)
            counts = [b.value for b in buckets]
            assert counts == sorted(counts), f"{family}{key} not cumulative: {counts}"
            (count,) = [s.value for s in samples if s.name == family + "_count" and _key(s) == key]
            (total,) = [s.value for s in samples if s.name == family + "_sum" and _key(s) == key]
            assert counts[-1] == count
            assert total >= 0
    return series


def _key(sample: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sample.labels.items()))


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of ``name`` with exactly these labels."""
    found = [s.value for s in samples if s.name == name and dict(s.labels) == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


async def scrape(gateway: RunningService) -> tuple[dict[str, str], list[Sample], str]:
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.get(gateway.base_url + "/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    types, samples = parse(answer.text)
    return types, samples, answer.text


async def scrape_when(
    gateway: RunningService, requests: int
) -> tuple[dict[str, str], list[Sample], str]:
    """Scrape once the logger has accounted ``requests`` calls (it runs on its own task)."""
    with trio.fail_after(10):
        while True:
            types, samples, page = await scrape(gateway)
            seen = sum(s.value for s in samples if s.name == "llm_proxy_requests_total")
            if seen >= requests:
                return types, samples, page
            await trio.sleep(0.02)


async def two_providers(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "mock": {"enabled": True},
            },
            "limits": {"default_client_requests_per_minute": 0},
        }
    )


async def test_calls_are_counted_and_every_line_is_valid(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await two_providers(start_gateway, fake_openai)
    client = sdk(gateway)
    await client.chat.completions.create(model="mock", messages=HELLO)
    stream = await client.chat.completions.create(model="mock", messages=HELLO, stream=True)
    async for _ in stream:
        pass
    await client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    fake_openai.enqueue(server_error())
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no-such-model", messages=HELLO)

    types, samples, _ = await scrape_when(gateway, 5)

    assert types["llm_proxy_requests_total"] == "counter"
    assert (
        value(
            samples,
            "llm_proxy_requests_total",
            provider="mock",
            model="mock",
            status="ok",
            endpoint="chat",
        )
        == 2
    )
    ok = {"provider": "openai", "model": "gpt-4o-mini"}
    assert value(samples, "llm_proxy_requests_total", **ok, status="ok", endpoint="chat") == 1
    failed = {"provider": "openai", "model": "gpt-4o"}
    assert (
        value(samples, "llm_proxy_requests_total", **failed, status="error", endpoint="chat") == 1
    )
    assert (
        value(samples, "llm_proxy_errors_total", **failed, type="upstream_error", endpoint="chat")
        == 1
    )
    # A name that routed nowhere is not a label: the call counts under provider/model "none".
    nowhere = {"provider": "none", "model": "none"}
    assert (
        value(samples, "llm_proxy_requests_total", **nowhere, status="error", endpoint="chat") == 1
    )
    assert (
        value(
            samples,
            "llm_proxy_errors_total",
            **nowhere,
            type="invalid_request_error",
            endpoint="chat",
        )
        == 1
    )
    assert value(samples, "llm_proxy_tokens_total", **ok, kind="prompt") == 3
    assert value(samples, "llm_proxy_tokens_total", **ok, kind="completion") > 0
    assert value(samples, "llm_proxy_cost_usd_total", **ok) > 0
    assert value(samples, "llm_proxy_cost_usd_total", provider="mock", model="mock") == 0

    assert check_histograms(types, samples) == 5  # duration: mock, openai, none; ttft: two
    assert value(samples, "llm_proxy_request_duration_seconds_count", provider="mock") == 2
    assert value(samples, "llm_proxy_request_duration_seconds_count", provider="openai") == 2
    # The failed call never produced a first token.
    assert value(samples, "llm_proxy_time_to_first_token_seconds_count", provider="openai") == 1
    assert {s.labels["provider"] for s in samples if "seconds_bucket" in s.name} <= {
        "mock",
        "openai",
        "none",
    }

    for state, expected in (("closed", 1), ("open", 0), ("half_open", 0)):
        assert value(samples, "llm_proxy_breaker_state", provider="openai", state=state) == expected
    assert value(samples, "llm_proxy_upstream_errors_total", provider="openai") == 1
    assert value(samples, "llm_proxy_provider_in_flight", provider="openai") == 0
    assert value(samples, "llm_proxy_provider_waiting", provider="mock") == 0
    assert value(samples, "llm_proxy_queue_depth", queue="logger") >= 0
    assert value(samples, "llm_proxy_queue_depth", queue="writer") >= 0
    assert value(samples, "llm_proxy_requests_in_flight") == 0  # a scrape is no model call
    assert value(samples, "llm_proxy_live_subscribers", feed="requests") == 0
    assert value(samples, "llm_proxy_live_events_dropped_total", feed="events") == 0
    assert value(samples, "llm_proxy_sessions_active") == 0
    assert value(samples, "llm_proxy_retention_rows_deleted_total") == 0
    assert value(samples, "llm_proxy_retention_responses_deleted_total") == 0
    assert value(samples, "llm_proxy_uptime_seconds") > 0
    assert value(samples, "process_resident_memory_bytes") > 1_000_000
    assert value(samples, "llm_proxy_rate_limit_decisions_total", decision="allowed") == 5
    assert types["llm_proxy_writer_flush_seconds"] == "summary"
    assert value(samples, "llm_proxy_writer_batch_rows") >= 0
    assert value(samples, "llm_proxy_writer_flush_seconds_sum") >= 0
    assert value(samples, "llm_proxy_db_busy_waits_total") == 0  # one process: no contention
    assert value(samples, "llm_proxy_db_busy_timeouts_total") == 0
    assert value(samples, "llm_proxy_db_busy_wait_seconds_total") == 0
    assert value(samples, "llm_proxy_db_up") == 1
    assert value(samples, "llm_proxy_db_buffered_records") == 0
    assert value(samples, "llm_proxy_db_records_dropped_total") == 0
    assert value(samples, "llm_proxy_connections_open") >= 1  # this scrape's
    assert value(samples, "llm_proxy_connections_shed_total", reason="refused") == 0
    # No client id or key ever labels a series.
    assert {k for s in samples for k in s.labels} <= {
        "provider",
        "model",
        "status",
        "type",
        "kind",
        "le",
        "state",
        "queue",
        "feed",
        "decision",
        "reason",
        "version",
        "endpoint",
        "scope",  # a budget's: client, global or provider (never a client's id)
        "period",
    }


async def test_metrics_need_no_sign_in_and_hold_no_secret(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await two_providers(start_gateway, fake_openai)
    async with signed_in(gateway) as admin:
        made = await admin.post("/api/clients", json={"name": "metered"})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        await sdk(gateway, key=token).chat.completions.create(model="mock", messages=HELLO)
        await sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        _, samples, page = await scrape_when(gateway, 2)
        assert value(samples, "llm_proxy_sessions_active") >= 1
    for secret in (token, token[3:], CLIENT_KEY, DEFAULT_API_KEY, ADMIN_PASSWORD):
        assert secret not in page
    client_id = made.json()["id"]
    assert client_id not in page
    assert "metered" not in page


async def test_metrics_are_served_with_the_dashboard_off(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"dashboard": {"enabled": False}})
    types, samples, _ = await scrape(gateway)
    assert types["llm_proxy_request_duration_seconds"] == "histogram"
    assert value(samples, "llm_proxy_breaker_state", provider="mock", state="closed") == 1


async def test_unknown_model_names_add_no_series(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await two_providers(start_gateway, fake_openai)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        for i in range(300):
            answer = await client.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {CLIENT_KEY}"},
                json={"model": f"unknown-model-{i}", "messages": HELLO},
            )
            assert answer.status_code == 404
    _, samples, page = await scrape_when(gateway, 300)
    assert "unknown-model" not in page
    assert {s.labels.get("model") for s in samples} <= {None, "none"}
    nowhere = {"provider": "none", "model": "none"}
    assert (
        value(samples, "llm_proxy_requests_total", **nowhere, status="error", endpoint="chat")
        == 300
    )


async def test_routed_model_names_are_capped(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # Any name routes to the mock as "mock/<name>": a client can invent names without end.
    gateway = await two_providers(start_gateway, fake_openai)
    client = sdk(gateway)
    for i in range(MAX_MODELS + 100):
        await client.chat.completions.create(model=f"mock/invented-{i}", messages=HELLO)
    _, samples, _ = await scrape_when(gateway, MAX_MODELS + 100)
    requests = [s for s in samples if s.name == "llm_proxy_requests_total"]
    models = {s.labels["model"] for s in requests}
    assert len(models) == MAX_MODELS + 1
    assert "other" in models
    assert value(
        samples,
        "llm_proxy_requests_total",
        provider="mock",
        model="other",
        status="ok",
        endpoint="chat",
    ) == (100)
    assert sum(s.value for s in requests) == MAX_MODELS + 100
    assert value(samples, "llm_proxy_model_labels") == MAX_MODELS


def _record(model: str, provider: str | None = "openai", **fields: object) -> RequestRecord:
    values: dict[str, object] = {
        "request_id": "req_1",
        "ts_ms": 0,
        "client_id": "cl_secret_client",
        "provider": provider,
        "model": model,
        "upstream_model": model,
        "stream": False,
        "status": "ok",
        "http_status": 200,
        "latency_ms": 1500.0,
        "ttft_ms": 50.0,
        **fields,
    }
    return RequestRecord(**values)  # type: ignore[arg-type]


def test_three_hundred_model_names_make_at_most_the_cap() -> None:
    metrics = Metrics()
    for i in range(300):
        metrics.observe(_record(f"gpt-made-up-{i}"))
    # Names seen before the cap keep their series; later calls of them still count there.
    metrics.observe(_record("gpt-made-up-0"))
    out = Exposition()
    metrics.write(out)
    _, samples = parse(out.text())
    requests = {s.labels["model"]: s.value for s in samples if s.name == "llm_proxy_requests_total"}
    assert len(requests) == MAX_MODELS + 1
    assert requests["other"] == 100
    assert requests["gpt-made-up-0"] == 2
    assert metrics.models == MAX_MODELS
    assert "cl_secret_client" not in out.text()


def test_odd_names_are_not_labels_and_labels_are_escaped() -> None:
    metrics = Metrics()
    metrics.observe(_record("x" * 500))
    metrics.observe(_record("two\nlines"))
    metrics.observe(_record("bad\ud800surrogate"))
    metrics.observe(_record('quote"and\\slash'))
    metrics.observe(_record("gpt-4o", status="error", error_type="Free Text!"))
    out = Exposition()
    metrics.write(out)
    _, samples = parse(out.text())
    models = {s.labels["model"] for s in samples if s.name == "llm_proxy_requests_total"}
    assert models == {"other", 'quote"and\\slash', "gpt-4o"}
    assert value(
        samples,
        "llm_proxy_errors_total",
        provider="openai",
        model="gpt-4o",
        type="other",
        endpoint="chat",
    )
    assert 'model="quote\\"and\\\\slash"' in out.text()
    assert escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_calls_are_counted_by_endpoint_under_a_bounded_label() -> None:
    metrics = Metrics()
    metrics.observe(_record("gpt-4o"))
    metrics.observe(_record("gpt-4o", endpoint="responses"))
    metrics.observe(_record("gpt-4o", endpoint="responses"))
    metrics.observe(_record("gpt-4o", endpoint="responses", status="error", error_type="x_y"))
    for i in range(50):  # a name the gateway does not know is never a label of its own
        metrics.observe(_record("gpt-4o", endpoint=f"made-up-{i}"))
    out = Exposition()
    metrics.write(out)
    _, samples = parse(out.text())
    by = {"provider": "openai", "model": "gpt-4o"}
    assert value(samples, "llm_proxy_requests_total", **by, status="ok", endpoint="chat") == 1
    assert value(samples, "llm_proxy_requests_total", **by, status="ok", endpoint="responses") == 2
    assert value(samples, "llm_proxy_requests_total", **by, status="ok", endpoint="other") == 50
    assert (
        value(samples, "llm_proxy_requests_total", **by, status="error", endpoint="responses") == 1
    )
    assert value(samples, "llm_proxy_errors_total", **by, type="x_y", endpoint="responses") == 1
    endpoints = {s.labels["endpoint"] for s in samples if "endpoint" in s.labels}
    assert endpoints == {"chat", "responses", "other"}
    # Tokens, cost and durations stay by provider and model only.
    assert not [
        s
        for s in samples
        if "endpoint" in s.labels
        and s.name != "llm_proxy_requests_total"
        and s.name != "llm_proxy_errors_total"
    ]


def test_histogram_bounds_are_inclusive_and_values_formatted() -> None:
    metrics = Metrics()
    for seconds in (0.05, 0.0501, 120.0, 500.0):
        metrics.observe(_record("gpt-4o", latency_ms=seconds * 1000, ttft_ms=None))
    out = Exposition()
    metrics.write(out)
    types, samples = parse(out.text())
    check_histograms(types, samples)
    buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == "llm_proxy_request_duration_seconds_bucket"
    }
    assert buckets["0.05"] == 1
    assert buckets["0.1"] == 2
    assert buckets["120.0"] == 3
    assert buckets["+Inf"] == 4
    assert not [s for s in samples if s.name.startswith("llm_proxy_time_to_first_token")]
    assert [format_value(v) for v in (3, 0.5, math.inf, -math.inf)] == ["3", "0.5", "+Inf", "-Inf"]
    assert format_value(math.nan) == "NaN"


def test_tokens_are_counted_by_kind_cache_writes_included() -> None:
    metrics = Metrics()
    metrics.observe(
        _record(
            "claude-sonnet-4-5",
            provider="anthropic",
            prompt_tokens=5000,
            completion_tokens=40,
            reasoning_tokens=10,
            cached_tokens=3000,
            cache_write_tokens=1500,
        )
    )
    metrics.observe(_record("claude-sonnet-4-5", provider="anthropic", prompt_tokens=7))
    out = Exposition()
    metrics.write(out)
    _, samples = parse(out.text())
    by = {"provider": "anthropic", "model": "claude-sonnet-4-5"}
    counted = {
        kind: value(samples, "llm_proxy_tokens_total", **by, kind=kind)
        for kind in ("prompt", "completion", "reasoning", "cached", "cache_write")
    }
    # Written to the provider's cache: billed above the input rate, so worth its own series.
    assert counted == {
        "prompt": 5007,
        "completion": 40,
        "reasoning": 10,
        "cached": 3000,
        "cache_write": 1500,
    }
