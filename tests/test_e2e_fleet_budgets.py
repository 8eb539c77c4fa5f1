"""Spend budgets across two gateways sharing one Redis and one database: one client budget,
counted fleet-wide, overshot by at most one call across both."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import openai
import trio

from proxy.service import RunningService
from storage import queries
from storage.audit import list_audit
from tests.conftest import StartGateway, signed_in
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.redis_server import RedisServer

HELLO: Any = [{"role": "user", "content": "hello there gateway, how are you today"}]


def _fleet_config(fake: FakeOpenAI, redis_url: str, name: str) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"base_url": fake.base_url, "api_key": DEFAULT_API_KEY, "timeout_s": 5}
        },
        "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
        # "refuse": a Redis slow to answer on a loaded machine must not let either gateway
        # decide alone (the "local" policy's documented per-process budgets).
        "cluster": {"redis_url": redis_url, "instance_name": name, "on_redis_down": "refuse"},
    }


async def test_two_gateways_share_one_client_budget(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    a = await start_gateway(_fleet_config(fake_openai, redis.url, "a"))
    b = await start_gateway(_fleet_config(fake_openai, redis.url, "b"))
    budget = 0.0001
    async with signed_in(a) as admin:
        made = await admin.post(
            "/api/clients",
            json={"name": "acme", "budget_day_usd": budget, "rate_limit_per_minute": 0},
        )
        assert made.status_code == 201, made.text
        key = made.json()["token"]
    keeper_b = b.gateway.budgets
    assert keeper_b is not None
    with trio.fail_after(10):
        while keeper_b.statistics().budgets == 0:  # b reads the budgets every second
            await trio.sleep(0.05)
    outcomes: list[str] = []
    # One SDK client per gateway (each makes an SSL context on the loop the gateways share).
    sdk = {
        gateway.base_url: openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key=key, max_retries=0
        )
        for gateway in (a, b)
    }

    async def one(gateway: RunningService) -> None:
        try:
            await sdk[gateway.base_url].chat.completions.create(
                model="fast", messages=HELLO, max_tokens=10
            )
            outcomes.append("ok")
        except openai.RateLimitError as exc:
            outcomes.append(str(exc.code))
        except openai.InternalServerError as exc:  # 503 while Redis did not answer
            outcomes.append(str(exc.status_code))

    for _wave in range(30):
        before = len(outcomes)
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(one, a if n % 2 else b)
        if set(outcomes[before:]) == {"budget_exceeded"}:
            break
    assert {"ok", "budget_exceeded"} <= set(outcomes) <= {"ok", "budget_exceeded", "503"}
    with trio.fail_after(10):
        while True:
            rows = await a.gateway.reads.run(partial(queries.recent_requests, limit=5000))
            if len(rows) >= len(outcomes):
                break
            await trio.sleep(0.05)
    costs = [float(str(row["cost_usd"])) for row in rows if row["status"] == "ok"]
    assert len(costs) == outcomes.count("ok")
    # Each gateway alone would have let a whole budget through: together they stop at one.
    assert sum(costs) <= budget + max(costs)
    if "503" not in outcomes:
        # (a reservation whose answer a slow Redis lost is given back, but may hold a moment)
        assert sum(costs) >= budget
        await _announced_once(a)
    for gateway in (a, b):
        parts = gateway.gateway
        assert parts.budgets is not None
        assert parts.budgets.statistics().refusals["client"] >= 1


async def _announced_once(gateway: RunningService) -> None:
    """Each crossing was announced once across the fleet (the first gateway to see it claims
    it in Redis): one audit row each in the shared database."""
    with trio.fail_after(10):
        while True:
            audits = await gateway.gateway.reads.run(partial(list_audit, limit=1000))
            actions = sorted(row.action for row in audits if row.action.startswith("budget."))
            if "budget.exceeded" in actions:
                break
            await trio.sleep(0.05)
    await trio.sleep(0.5)  # a second announcement, if there were one, would be written by now
    audits = await gateway.gateway.reads.run(partial(list_audit, limit=1000))
    actions = sorted(row.action for row in audits if row.action.startswith("budget."))
    assert actions == ["budget.exceeded", "budget.warning"]


async def test_a_budget_set_mid_period_counts_what_the_other_gateway_already_spent(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    a = await start_gateway(_fleet_config(fake_openai, redis.url, "a"))
    b = await start_gateway(_fleet_config(fake_openai, redis.url, "b"))
    async with signed_in(a) as admin:
        made = await admin.post("/api/clients", json={"name": "acme", "rate_limit_per_minute": 0})
        assert made.status_code == 201, made.text
        client_id, key = made.json()["id"], made.json()["token"]

        # One SDK client per gateway: each makes an SSL context, ~20 ms of the one trio loop
        # the gateways share with this test (40 at once held Redis' answers past their 1 s).
        sdk = {
            gateway.base_url: openai.AsyncOpenAI(
                base_url=gateway.base_url + "/v1", api_key=key, max_retries=0
            )
            for gateway in (a, b)
        }

        async def call(gateway: RunningService) -> str:
            try:
                await sdk[gateway.base_url].chat.completions.create(
                    model="fast", messages=HELLO, max_tokens=10
                )
            except openai.RateLimitError as exc:
                return str(exc.code)
            return "ok"

        # The key reaches b through the change bus, within a second.
        async with httpx.AsyncClient(base_url=b.base_url, timeout=10) as plain:
            with trio.fail_after(10):
                while (
                    await plain.get("/v1/models", headers={"authorization": f"Bearer {key}"})
                ).status_code == 401:
                    await trio.sleep(0.05)
        # Spent through b before any budget exists: only b counted it, and the database has it.
        assert [await call(b) for _ in range(20)] == ["ok"] * 20
        with trio.fail_after(10):
            while len(rows := await _answered(a)) < 20:
                await trio.sleep(0.05)
        per_call = max(rows)
        budget = 25 * per_call
        changed = await admin.put(f"/api/clients/{client_id}", json={"budget_day_usd": budget})
        assert changed.status_code == 200, changed.text
    outcomes: list[str] = []

    async def through_a() -> None:
        outcomes.append(await call(a))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(through_a)
    with trio.fail_after(10):
        while len(rows := await _answered(a)) < 20 + outcomes.count("ok"):
            await trio.sleep(0.05)
    # About five more fit; a gateway that knew only its own spend would have let 25 through.
    assert outcomes.count("ok") >= 1
    assert sum(rows) <= budget + per_call


async def _answered(gateway: RunningService) -> list[float]:
    """The cost of every answered call in the shared database."""
    rows = await gateway.gateway.reads.run(partial(queries.recent_requests, limit=5000))
    return [float(str(row["cost_usd"])) for row in rows if row["status"] == "ok"]
