"""``/api/providers`` and ``/api/models``: what they show, and changes applied to live traffic."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.errors import ModelNotFound, UpstreamUnavailable
from proxy.pricing import PriceOverride, Pricer, TokenCounts
from proxy.routing import AliasTarget, Route, Router
from proxy.service import RunningService
from storage.audit import list_audit
from tests.conftest import StartGateway, logged, on_each_backend, sdk, signed_in
from tests.fakes.openai_upstream import DEFAULT_API_KEY, Echo, ErrorReply, FakeOpenAI

VIEWER_PASSWORD = "a-long-enough-viewer-password"
SECRET_KEY = "sk-secret-value-1234"
PING = [{"role": "user", "content": "hello there gateway"}]  # 3 prompt tokens upstream


def openai_config(fake: FakeOpenAI, **extra: object) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {
                "base_url": fake.base_url,
                "api_key": fake.api_key,
                "timeout_s": 5,
                **extra,
            }
        },
        "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
    }


@pytest.fixture
async def running(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    return await start_gateway(openai_config(fake_openai))


async def second_upstream(nursery: trio.Nursery) -> FakeOpenAI:
    fake = FakeOpenAI(api_key=DEFAULT_API_KEY)
    await nursery.start(fake.run)
    return fake


async def ask(gateway: RunningService, model: str = "gpt-4o-mini") -> str | None:
    completion = await sdk(gateway).chat.completions.create(model=model, messages=PING)
    return completion.choices[0].message.content


async def audited(gateway: RunningService) -> list[tuple[str, str, dict[str, object]]]:
    rows = await gateway.gateway.reads.run(partial(list_audit, limit=100))
    return [(row.action, row.target, row.detail) for row in reversed(rows)]


def strings(value: object, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    """Every string in decoded JSON, keys included, except the values of keys in ``skip``."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            if key not in skip:
                yield from strings(item, skip)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, skip)


# -- reading ---------------------------------------------------------------------------------------


async def test_providers_show_settings_and_health_but_never_the_key(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    upstream = FakeOpenAI(api_key=SECRET_KEY)
    await nursery.start(upstream.run)
    gateway = await start_gateway(openai_config(upstream, max_concurrency=7))
    assert await ask(gateway) == "echo: hello there gateway"
    async with signed_in(gateway) as admin:
        listing = await admin.get("/api/providers")
        one = await admin.get("/api/providers/openai")
        unknown = await admin.get("/api/providers/nope")
    assert listing.status_code == 200
    assert one.status_code == 200
    for answer in (listing, one):
        assert SECRET_KEY not in answer.text
        assert "sk-" not in answer.text
        # Not even the last four (base URLs are skipped: their port is random).
        assert not [s for s in strings(answer.json(), frozenset({"base_url"})) if "1234" in s]
    by_name = {p["name"]: p for p in listing.json()["data"]}
    assert set(by_name) == {"openai", "gemini", "deepseek", "grok", "anthropic", "ollama", "mock"}
    openai_ = one.json()
    assert openai_ == by_name["openai"] | {"statistics": openai_["statistics"]}
    assert openai_["enabled"] is True
    assert openai_["running"] is True
    assert openai_["api_key_configured"] is True
    assert openai_["base_url"] == upstream.base_url
    assert openai_["max_concurrency"] == 7
    assert openai_["timeout_s"] == 5
    assert openai_["breaker"]["state"] == "closed"
    assert openai_["statistics"]["calls"] == 1
    assert openai_["statistics"]["max_concurrency"] == 7
    assert openai_["credit_balance_usd"] is None
    assert openai_["low_credit"] is False
    assert openai_["overrides"] is None
    gemini = by_name["gemini"]
    assert gemini["enabled"] is False
    assert gemini["running"] is False
    assert gemini["api_key_configured"] is False
    assert gemini["statistics"] is None
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]["message"]


async def test_viewers_read_but_may_not_change_or_test(running: RunningService) -> None:
    async with signed_in(running) as admin:
        made = await admin.post(
            "/api/users",
            json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD},
        )
        assert made.status_code == 201
    async with signed_in(running, "vera", VIEWER_PASSWORD) as viewer:
        assert (await viewer.get("/api/providers")).status_code == 200
        assert (await viewer.get("/api/models")).status_code == 200
        refused = [
            await viewer.put("/api/providers/openai", json={"enabled": False}),
            await viewer.post("/api/providers/openai/test"),
            await viewer.put("/api/models/gpt-4o-mini", json={"enabled": False}),
        ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    assert running.gateway.router.is_enabled("openai")
    assert not running.gateway.router.disabled_models
    assert not [a for a in await audited(running) if a[0].startswith(("provider.", "model."))]


# -- providers, live -------------------------------------------------------------------------------


async def test_a_new_base_url_takes_the_next_call_while_a_running_stream_finishes(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, nursery: trio.Nursery
) -> None:
    other = await second_upstream(nursery)
    # The key may go to the other upstream's origin only because the file allows it.
    running = await start_gateway(openai_config(fake_openai, allowed_base_urls=[other.base_url]))
    fake_openai.enqueue(Echo(text="one two three four five", chunks=5, chunk_interval_s=0.1))
    streamed: list[str] = []

    async def slow_stream() -> None:
        stream = await sdk(running).chat.completions.create(
            model="gpt-4o-mini", messages=PING, stream=True
        )
        async for chunk in stream:
            streamed.extend(c.delta.content or "" for c in chunk.choices)

    async with signed_in(running) as admin:
        async with trio.open_nursery() as calls:
            calls.start_soon(slow_stream)
            with trio.fail_after(5):
                while not fake_openai.received:
                    await trio.sleep(0.01)
            moved = await admin.put("/api/providers/openai", json={"base_url": other.base_url})
            assert moved.status_code == 200, moved.text
            assert moved.json()["base_url"] == other.base_url
            assert moved.json()["overrides"]["base_url"] == other.base_url
            # The next call goes to the new upstream while the old stream is still running.
            assert await ask(running) == "echo: hello there gateway"
            assert len(other.received) == 1
        assert "".join(streamed) == "one two three four five"
        assert len(fake_openai.received) == 1
        back = await admin.put("/api/providers/openai", json={"base_url": None})
        assert back.json()["base_url"] == fake_openai.base_url
        assert back.json()["overrides"]["base_url"] is None
        await ask(running)
        assert len(fake_openai.received) == 2
        assert len(other.received) == 1
        bad = await admin.put("/api/providers/openai", json={"base_url": "ftp://x"})
        assert bad.status_code == 400
        assert "base_url" in bad.json()["error"]["message"]
        unknown_field = await admin.put("/api/providers/openai", json={"api_key": "sk-x"})
        assert unknown_field.status_code == 400
    changes = [a for a in await audited(running) if a[0] == "provider.update"]
    assert changes == [
        ("provider.update", "openai", {"base_url": other.base_url}),
        ("provider.update", "openai", {"base_url": None}),
    ]


async def test_max_concurrency_changes_live(running: RunningService) -> None:
    async with signed_in(running) as admin:
        changed = await admin.put("/api/providers/openai", json={"max_concurrency": 3})
        assert changed.status_code == 200, changed.text
        assert changed.json()["max_concurrency"] == 3
        stats = (await admin.get("/api/providers/openai")).json()["statistics"]
        assert stats["max_concurrency"] == 3
        assert running.gateway.providers["openai"].statistics().max_concurrency == 3
        assert await ask(running) == "echo: hello there gateway"
        reset = await admin.put("/api/providers/openai", json={"max_concurrency": None})
        assert reset.json()["statistics"]["max_concurrency"] == 256
        zero = await admin.put("/api/providers/openai", json={"max_concurrency": 0})
        assert zero.status_code == 400
        assert "max_concurrency" in zero.json()["error"]["message"]


async def test_disabling_a_provider_stops_its_calls_and_enabling_resumes_them(
    running: RunningService,
) -> None:
    async with signed_in(running) as admin:
        off = await admin.put("/api/providers/openai", json={"enabled": False})
        assert off.status_code == 200
        assert off.json()["enabled"] is False
        with pytest.raises(openai.APIStatusError) as refused:
            await ask(running)
        assert refused.value.status_code == 503
        assert refused.value.code == "provider_disabled"
        on = await admin.put("/api/providers/openai", json={"enabled": True})
        assert on.json()["enabled"] is True
        assert await ask(running) == "echo: hello there gateway"
        # Only a running provider can be switched on: gemini has no key, hence no actor.
        conflict = await admin.put("/api/providers/gemini", json={"enabled": True})
        assert conflict.status_code == 409
        assert "config file" in conflict.json()["error"]["message"]
        assert (await admin.put("/api/providers/nope", json={})).status_code == 404
    changes = [a for a in await audited(running) if a[0] == "provider.update"]
    assert [detail for _, _, detail in changes] == [{"enabled": False}, {"enabled": True}]


# -- the test call ---------------------------------------------------------------------------------


async def test_the_test_call_reports_latency_or_the_upstream_error(
    running: RunningService, fake_openai: FakeOpenAI
) -> None:
    async with signed_in(running) as admin:
        good = await admin.post("/api/providers/openai/test", json={"model": "gpt-4o"})
        fake_openai.enqueue(ErrorReply(500, message="The upstream fell over"))
        failed = await admin.post("/api/providers/openai/test")
        fake_openai.enqueue(ErrorReply(400, message="Unsupported parameter: 'max_tokens'"))
        refused = await admin.post("/api/providers/openai/test", content=b"")
        not_running = await admin.post("/api/providers/gemini/test")
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["ok"] is True
    assert body["model"] == "gpt-4o"
    assert body["text"] == "echo: ping"
    assert body["latency_ms"] > 0
    assert 0 < body["first_token_ms"] <= body["latency_ms"]
    sent = fake_openai.received[0].body
    assert sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": "ping"}]
    assert failed.status_code == 200
    assert failed.json()["ok"] is False
    assert failed.json()["status"] >= 500
    assert "The upstream fell over" in failed.json()["error"]
    assert refused.json()["ok"] is False
    assert refused.json()["status"] == 400
    assert "max_tokens" in refused.json()["error"]
    assert not_running.status_code == 409
    tests = [a for a in await audited(running) if a[0] == "provider.test"]
    assert [(target, detail["ok"]) for _, target, detail in tests] == [
        ("openai", True),
        ("openai", False),
        ("openai", False),
    ]


# -- models ----------------------------------------------------------------------------------------


async def test_models_list_aliases_and_provider_models_with_prices(
    running: RunningService,
) -> None:
    async with signed_in(running) as admin:
        answer = await admin.get("/api/models")
    assert answer.status_code == 200
    models = {m["id"]: m for m in answer.json()["data"]}
    assert models["fast"]["alias"] is True
    assert models["fast"]["provider"] == "openai"
    assert models["fast"]["upstream_model"] == "gpt-4o-mini"
    mini = models["gpt-4o-mini"]
    assert mini["enabled"] is True
    assert mini["settings"] is None
    assert mini["price_source"] == "table"
    assert mini["prices"]["input_per_mtok"] > 0
    assert mini["prices"]["output_per_mtok"] > 0
    assert {"gpt-4o", "o3-mini"} <= set(models)


async def test_disabling_a_model_answers_404_for_every_name_of_it(
    running: RunningService,
) -> None:
    async with signed_in(running) as admin:
        off = await admin.put("/api/models/gpt-4o-mini", json={"enabled": False})
        assert off.status_code == 200, off.text
        assert off.json()["enabled"] is False
        assert off.json()["settings"]["enabled"] is False
        for name in ("gpt-4o-mini", "fast", "openai/gpt-4o-mini"):
            with pytest.raises(openai.NotFoundError) as missing:
                await ask(running, name)
            assert "disabled" in str(missing.value.message)
            assert missing.value.code == "model_not_found"
        assert await ask(running, "gpt-4o") == "echo: hello there gateway"
        listed = {m["id"]: m for m in (await admin.get("/api/models")).json()["data"]}
        assert listed["gpt-4o-mini"]["enabled"] is False
        assert listed["gpt-4o-mini"]["model_enabled"] is False
        # /v1/models no longer offers it, under any name (the alias "fast" reaches it too).
        offered = {m.id async for m in sdk(running).models.list()}
        assert not offered & {"gpt-4o-mini", "fast", "openai/gpt-4o-mini"}
        assert "gpt-4o" in offered
        on = await admin.put("/api/models/gpt-4o-mini", json={"enabled": None})
        assert on.json()["enabled"] is True
        assert await ask(running, "fast") == "echo: hello there gateway"
        assert "fast" in {m.id async for m in sdk(running).models.list()}
        unknown = await admin.put("/api/models/no-such-model", json={"enabled": False})
        assert unknown.status_code == 404
    changes = [a for a in await audited(running) if a[0] == "model.update"]
    assert changes == [
        ("model.update", "gpt-4o-mini", {"enabled": False}),
        ("model.update", "gpt-4o-mini", {"enabled": None}),
    ]


@on_each_backend
async def test_an_alias_made_in_the_dashboard_routes_at_once_and_at_the_next_start(
    running: RunningService, start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    async with signed_in(running) as admin:
        made = await admin.put(
            "/api/models/team-model", json={"provider": "openai", "upstream_model": "gpt-4o"}
        )
        assert made.status_code == 200, made.text
        assert made.json()["provider"] == "openai"
        assert await ask(running, "team-model") == "echo: hello there gateway"
        assert "team-model" in {m.id async for m in sdk(running).models.list()}
        half = await admin.put("/api/models/other", json={"provider": "openai"})
        assert half.status_code == 400
        unknown = await admin.put(
            "/api/models/other", json={"provider": "nope", "upstream_model": "x"}
        )
        assert unknown.status_code == 400
        dropped = await admin.put(
            "/api/models/team-model", json={"provider": None, "upstream_model": None}
        )
        assert dropped.status_code == 200
        with pytest.raises(openai.NotFoundError):
            await ask(running, "team-model")
        again = await admin.put(
            "/api/models/team-model", json={"provider": "openai", "upstream_model": "gpt-4o"}
        )
        assert again.status_code == 200
    running.stop()
    await running.stopped.wait()
    restarted = await start_gateway(openai_config(fake_openai))
    assert await ask(restarted, "team-model") == "echo: hello there gateway"


@on_each_backend
async def test_a_price_override_prices_the_next_call(running: RunningService) -> None:
    await ask(running)
    [before] = await logged(running, 1)
    async with signed_in(running) as admin:
        priced = await admin.put(
            "/api/models/gpt-4o-mini", json={"input_per_mtok": 1000, "output_per_mtok": 2000}
        )
        assert priced.status_code == 200, priced.text
        assert priced.json()["prices"] == {
            "input_per_mtok": 1000.0,
            "output_per_mtok": 2000.0,
            "cached_input_per_mtok": 1000.0,
        }
        assert priced.json()["price_source"] == "dashboard"
        await ask(running)
        rows = await logged(running, 2)
        bad = await admin.put("/api/models/gpt-4o-mini", json={"input_per_mtok": -1})
        assert bad.status_code == 400
    after = rows[0]
    assert after["request_id"] != before["request_id"]
    expected = (after["prompt_tokens"] * 1000 + after["completion_tokens"] * 2000) / 1e6  # type: ignore[operator]
    assert math.isclose(after["cost_usd"], expected)  # type: ignore[arg-type]
    assert not math.isclose(before["cost_usd"], expected)  # type: ignore[arg-type]


# -- credit ----------------------------------------------------------------------------------------


@on_each_backend
async def test_credit_is_debited_and_crossing_the_threshold_warns_once(
    running: RunningService,
) -> None:
    gateway = running.gateway
    events: list[dict[str, object]] = []
    balances: list[float] = []
    async with signed_in(running) as admin:
        # 3 prompt tokens at $50,000 per Mtok: $0.15 a call, whatever the answer.
        await admin.put(
            "/api/models/gpt-4o-mini", json={"input_per_mtok": 50_000, "output_per_mtok": 0}
        )
        credit = await admin.put(
            "/api/providers/openai",
            json={"credit_balance_usd": 1.0, "low_credit_threshold_usd": 0.5},
        )
        assert credit.json()["credit_balance_usd"] == 1.0
        assert credit.json()["low_credit"] is False
        with gateway.events.subscribe() as feed:
            for calls in range(1, 7):
                await ask(running)
                with trio.fail_after(5):
                    while True:
                        shown = (await admin.get("/api/providers/openai")).json()
                        if math.isclose(shown["credit_balance_usd"], 1.0 - 0.15 * calls):
                            break
                        await trio.sleep(0.02)
                balances.append(shown["credit_balance_usd"])
            await trio.sleep(0.2)
            while True:
                try:
                    event = dict(feed.receive_nowait())
                except trio.WouldBlock:
                    break
                if event["type"] == "credit":
                    events.append(event)
    rows = await logged(running, 6)
    assert math.isclose(sum(row["cost_usd"] for row in rows), 0.9)  # type: ignore[misc]
    assert shown["low_credit"] is True
    # Crossed on the fourth call (1.0 - 4 * 0.15 = 0.4 < 0.5): one event, one warning.
    [event] = events
    assert event["provider"] == "openai"
    assert event["threshold_usd"] == 0.5
    assert math.isclose(event["balance_usd"], 0.4)  # type: ignore[arg-type]
    warnings = [
        line
        for line in gateway.log_buffer.recent(1000)
        if line["logger"] == "llm_proxy.logger" and line["level"] == "WARNING"
    ]
    assert len(warnings) == 1
    assert "openai" in str(warnings[0]["message"])


# -- restart ---------------------------------------------------------------------------------------


@on_each_backend
async def test_stored_overrides_are_applied_at_start(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, nursery: trio.Nursery
) -> None:
    other = await second_upstream(nursery)
    config = openai_config(fake_openai, allowed_base_urls=[other.base_url])
    first = await start_gateway(config)
    async with signed_in(first) as admin:
        for path, change in [
            ("/api/providers/openai", {"base_url": other.base_url, "max_concurrency": 9}),
            ("/api/providers/openai", {"default_model": "gpt-4o", "credit_balance_usd": 5}),
            ("/api/models/gpt-4o", {"enabled": False}),
            ("/api/models/gpt-4o-mini", {"input_per_mtok": 1, "output_per_mtok": 2}),
        ]:
            answer = await admin.put(path, json=change)
            assert answer.status_code == 200, answer.text
    first.stop()
    with trio.fail_after(10):
        await first.stopped.wait()
    again = await start_gateway(config)
    actor = again.gateway.providers["openai"]
    assert actor.config.base_url == other.base_url
    assert actor.statistics().max_concurrency == 9
    assert actor.default_model == "gpt-4o"
    assert again.gateway.router.disabled_models == {"gpt-4o"}
    assert again.gateway.settings.credit_tracked == {"openai"}
    received = len(other.received)
    assert await ask(again) == "echo: hello there gateway"
    assert len(other.received) == received + 1
    [row] = await logged(again, 1)
    assert math.isclose(
        row["cost_usd"],  # type: ignore[arg-type]
        (row["prompt_tokens"] * 1 + row["completion_tokens"] * 2) / 1e6,  # type: ignore[operator]
    )
    with pytest.raises(openai.NotFoundError):
        await ask(again, "gpt-4o")


async def test_unknown_fields_and_bad_json_are_400(running: RunningService) -> None:
    async with signed_in(running) as admin:
        answers = [
            await admin.put(
                "/api/providers/openai",
                content=b"{not json",
                headers={"content-type": "application/json"},
            ),
            await admin.put("/api/providers/openai", json={"enabled": "yes"}),
            await admin.put("/api/models/gpt-4o", json={"price": 1}),
            await admin.post("/api/providers/openai/test", json={"model": 5}),
            await admin.put("/api/providers/mock", json={"base_url": "http://x.example"}),
        ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400, 400]
    assert all(isinstance(a.json()["error"]["message"], str) for a in answers)


async def test_routes_need_a_session(running: RunningService) -> None:
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        for method, path in [
            ("GET", "/api/providers"),
            ("PUT", "/api/providers/openai"),
            ("POST", "/api/providers/openai/test"),
            ("GET", "/api/models"),
            ("PUT", "/api/models/gpt-4o"),
        ]:
            assert (await client.request(method, path)).status_code == 401


# -- the live layers, directly ---------------------------------------------------------------------


def test_a_partial_dashboard_price_keeps_the_rest_from_the_config_then_the_table() -> None:
    pricer = Pricer({"fast": PriceOverride(input_per_mtok=1.0, output_per_mtok=2.0)})
    table = pricer.rates(provider="openai", upstream_model="gpt-4o-mini")
    assert table is not None
    tokens = TokenCounts(prompt=1000, completion=500)
    pricer.set_live_override("gpt-4o-mini", PriceOverride(input_per_mtok=100.0))
    cost = pricer.cost(provider="openai", upstream_model="gpt-4o-mini", alias=None, tokens=tokens)
    assert cost == pytest.approx((1000 * 100.0 + 500 * table.output_per_mtok) / 1e6)  # type: ignore[operator]
    pricer.set_live_override("fast", PriceOverride(output_per_mtok=4.0))
    assert pricer.rates(provider="openai", upstream_model="gpt-4o-mini", alias="fast") == (
        PriceOverride(1.0, 4.0, 1.0)
    )
    pricer.set_live_override("gpt-4o-mini", None)
    pricer.set_live_override("fast", PriceOverride())
    assert not pricer.live_overrides
    cost = pricer.cost(provider="openai", upstream_model="gpt-4o-mini", alias=None, tokens=tokens)
    assert cost == pytest.approx((1000 * table.input_per_mtok + 500 * table.output_per_mtok) / 1e6)  # type: ignore[operator]


def test_router_switches_providers_and_models_at_run_time() -> None:
    router = Router(
        aliases={"fast": AliasTarget("openai", "gpt-4o-mini")},
        providers=("openai", "gemini"),
        enabled=("openai",),
    )
    router.set_model_enabled("gpt-4o-mini", False)
    for name in ("fast", "gpt-4o-mini", "openai/gpt-4o-mini"):
        with pytest.raises(ModelNotFound, match="disabled"):
            router.resolve(name)
    assert router.route_of("fast") == Route("openai", "gpt-4o-mini", "fast")
    router.set_model_enabled("gpt-4o-mini", True)
    router.set_provider_enabled("openai", False)
    with pytest.raises(UpstreamUnavailable):
        router.resolve("fast")
    router.set_provider_enabled("openai", True)
    assert router.resolve("fast").provider == "openai"
    with pytest.raises(ValueError, match="unknown provider"):
        router.set_provider_enabled("nope", True)
