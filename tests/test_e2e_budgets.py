"""Spend budgets end to end: the whole gateway, the fake OpenAI upstream, the official SDKs."""

from __future__ import annotations

from functools import partial
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from storage import queries
from tests.conftest import StartGateway, on_each_backend, signed_in
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI

HELLO = [{"role": "user", "content": "hello there gateway, how are you today"}]


async def _gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 5,
                },
                "mock": {"enabled": True},
            },
            "models": {
                "fast": {"provider": "openai", "model": "gpt-4o-mini", "fallbacks": ["mock"]}
            },
        }
    )


async def _client(admin: httpx.AsyncClient, **fields: object) -> tuple[str, str]:
    made = await admin.post("/api/clients", json={"name": "acme", **fields})
    assert made.status_code == 201, made.text
    body = made.json()
    return str(body["id"]), str(body["token"])


def _sdk(gateway: RunningService, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


async def _rows(gateway: RunningService, count: int) -> list[dict[str, Any]]:
    with trio.fail_after(10):
        while True:
            rows = await gateway.gateway.reads.run(partial(queries.recent_requests, limit=1000))
            if len(rows) >= count:
                return rows
            await trio.sleep(0.05)


async def test_forty_concurrent_calls_overshoot_a_client_budget_by_at_most_one_call(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await _gateway(start_gateway, fake_openai)
    budget = 0.0001  # USD: about seventeen calls of gpt-4o-mini with max_tokens 10
    async with signed_in(gateway) as admin:
        client_id, key = await _client(admin, budget_day_usd=budget, rate_limit_per_minute=0)
    client = _sdk(gateway, key)
    outcomes: list[str] = []

    async def one() -> None:
        try:
            await client.chat.completions.create(model="fast", messages=HELLO, max_tokens=10)
            outcomes.append("ok")
        except openai.RateLimitError as exc:
            outcomes.append(str(exc.code))

    # Waves of 40 at once until one is refused whole: the budget is then spent
    for _wave in range(30):
        before = outcomes.count("ok")
        async with trio.open_nursery() as nursery:
            for _ in range(40):
                nursery.start_soon(one)
        if outcomes.count("ok") == before:
            break
    assert outcomes.count("ok") >= 1
    assert outcomes.count("budget_exceeded") >= 1
    rows = await _rows(gateway, len(outcomes))
    costs = [float(row["cost_usd"]) for row in rows if row["status"] == "ok"]
    assert len(costs) == outcomes.count("ok")
    assert sum(costs) <= budget + max(costs)
    refused = [row for row in rows if row["http_status"] == 429]
    assert len(refused) == outcomes.count("budget_exceeded")
    async with signed_in(gateway) as admin:
        shown = (await admin.get(f"/api/clients/{client_id}")).json()
    assert shown["budget_day_usd"] == budget
    assert shown["spend"]["day_usd"] == pytest.approx(sum(costs))
    assert shown["spend"]["state"] == "exceeded"


async def test_the_refusal_says_which_budget_and_when_it_resets(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await _gateway(start_gateway, fake_openai)
    async with signed_in(gateway) as admin:
        _client_id, key = await _client(admin, budget_month_usd=0.000001)
    await _sdk(gateway, key).chat.completions.create(model="fast", messages=HELLO)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as raw:
        answer = await raw.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "fast", "messages": HELLO},
        )
        assert answer.status_code == 429
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "insufficient_quota",
            "budget_exceeded",
            None,
        )
        assert "client 'acme' monthly budget of 1e-06 USD" in error["message"]
        assert "It resets at " in error["message"]
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["x-should-retry"] == "false"
        # every endpoint is under the same budget, each in its own error shape
        embeddings = await raw.post(
            "/v1/embeddings",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "text-embedding-3-small", "input": "hi"},
        )
        assert embeddings.status_code == 429
        assert embeddings.json()["error"]["code"] == "budget_exceeded"
    messages = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refusal:
        await messages.messages.create(
            model="fast", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert refusal.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "monthly budget" in refusal.value.message


async def test_a_provider_over_its_budget_falls_back_to_the_next_route(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await _gateway(start_gateway, fake_openai)
    async with signed_in(gateway) as admin:
        _client_id, key = await _client(admin)
        put = await admin.put(
            "/api/budgets/providers/openai", json={"month_usd": 0.000001, "warn_percent": 50}
        )
        assert put.status_code == 200, put.text
        client = _sdk(gateway, key)
        first = await client.chat.completions.with_raw_response.create(model="fast", messages=HELLO)
        assert first.headers["x-llm-proxy-provider"] == "openai"
        second = await client.chat.completions.with_raw_response.create(
            model="fast", messages=HELLO
        )
        assert second.headers["x-llm-proxy-provider"] == "mock"
        budgets = (await admin.get("/api/budgets")).json()
    openai_budget = budgets["providers"]["openai"]
    assert openai_budget["month_usd"] == 0.000001
    assert openai_budget["spend"]["state"] == "exceeded"
    assert [(a["scope"], a["id"], a["state"]) for a in budgets["alerts"]] == [
        ("provider", "openai", "exceeded")
    ]
    (row, _) = await _rows(gateway, 2)
    assert row["provider"] == "mock"
    assert row["attempts"] == 2
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as raw:
        metrics = (await raw.get("/metrics")).text
    assert 'llm_proxy_budget_refusals_total{scope="provider"} 1' in metrics
    assert (
        'llm_proxy_budget_limit_usd{scope="provider",provider="openai",period="month"} 1e-06'
        in (metrics)
    )
    assert (
        'llm_proxy_budget_spent_usd{scope="provider",provider="openai",period="month"}' in metrics
    )


async def test_unpriced_calls_are_counted_and_shown(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await _gateway(start_gateway, fake_openai)
    async with signed_in(gateway) as admin:
        client_id, key = await _client(admin, budget_month_usd=5)
        # a model no price table knows: its calls are unpriced, never free
        await _sdk(gateway, key).chat.completions.create(
            model="openai/house-model-7", messages=HELLO
        )
        (row,) = await _rows(gateway, 1)
        assert row["cost_usd"] is None
        assert row["prompt_tokens"]
        shown = (await admin.get(f"/api/clients/{client_id}")).json()["spend"]
        budgets = (await admin.get("/api/budgets")).json()
    assert (shown["day_unpriced_calls"], shown["month_unpriced_calls"]) == (1, 1)
    assert shown["month_usd"] == 0
    assert budgets["global"]["spend"]["month_unpriced_calls"] == 1
    assert budgets["providers"]["openai"]["spend"]["month_unpriced_calls"] == 1


@on_each_backend
async def test_budgets_through_the_api_and_bad_values_refused(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await _gateway(start_gateway, fake_openai)
    async with signed_in(gateway) as admin:
        client_id, _key = await _client(admin, budget_day_usd=5, budget_warn_percent=90)
        changed = await admin.patch(
            f"/api/clients/{client_id}", json={"budget_month_usd": 100, "budget_day_usd": None}
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["budget_day_usd"], body["budget_month_usd"], body["budget_warn_percent"]) == (
            None,
            100.0,
            90,
        )
        assert set(body["spend"]) == {
            "day_usd",
            "month_usd",
            "day_unpriced_calls",
            "month_unpriced_calls",
            "day_resets_at_ms",
            "month_resets_at_ms",
            "state",
        }
        listed = (await admin.get("/api/clients")).json()["data"]
        assert listed[0]["budget_month_usd"] == 100.0
        for bad, field in (
            ({"budget_day_usd": -1}, "budget_day_usd"),
            ({"budget_month_usd": 2e9}, "budget_month_usd"),
            ({"budget_warn_percent": 0}, "budget_warn_percent"),
        ):
            refused = await admin.patch(f"/api/clients/{client_id}", json=bad)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == field
            assert field in refused.json()["error"]["message"]
        put = await admin.put(
            "/api/budgets/global", json={"day_usd": 10, "month_usd": 200, "warn_percent": 75}
        )
        assert put.status_code == 200, put.text
        assert put.json()["global"]["month_usd"] == 200.0
        for bad, field in (
            ({"day_usd": -5}, "day_usd"),
            ({"month_usd": 1e10}, "month_usd"),
            ({"warn_percent": 101}, "warn_percent"),
        ):
            refused = await admin.put("/api/budgets/global", json=bad)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["param"] == field
        nan = await admin.put(
            "/api/budgets/global",
            content=b'{"day_usd": NaN}',
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 400
        unknown = await admin.put("/api/budgets/providers/nope", json={"month_usd": 1})
        assert unknown.status_code == 404
        shown = (await admin.get("/api/budgets")).json()
        assert shown["global"]["day_usd"] == 10.0
        assert shown["global"]["warn_percent"] == 75
        assert shown["alerts"] == []
        audits = await admin.get("/api/system/audit")
    if audits.status_code == 200:
        assert "budget.update" in audits.text
