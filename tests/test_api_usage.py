"""``/api/usage`` over real calls: totals, series, breakdowns, the log with its cursor, export."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import pytest

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, on_each_backend, sdk, signed_in
from tests.factories import make_record

HELLO = [{"role": "user", "content": "hello there gateway"}]
CALLS = 7

pytestmark = on_each_backend


@pytest.fixture
async def used(start_gateway: StartGateway) -> RunningService:
    """A gateway that answered ``CALLS`` calls of the mock model, one of them an error."""
    gateway = await start_gateway()
    client = sdk(gateway)
    for _ in range(CALLS - 1):
        await client.chat.completions.create(model="mock", messages=HELLO)
    async with httpx.AsyncClient(base_url=gateway.base_url) as raw:
        missing = await raw.post(
            "/v1/chat/completions",
            json={"model": "no-such-model", "messages": HELLO},
            headers={"authorization": client.api_key and f"Bearer {client.api_key}"},
        )
        assert missing.status_code == 404
    await logged(gateway, CALLS)
    return gateway


async def test_summary_and_breakdowns_count_the_calls(used: RunningService) -> None:
    async with signed_in(used) as admin:
        totals = (await admin.get("/api/usage/summary")).json()
        assert totals["requests"] == CALLS
        assert totals["errors"] == 1
        assert totals["prompt_tokens"] > 0
        assert totals["avg_latency_ms"] > 0
        assert totals["p95_latency_ms"] is not None
        models = (await admin.get("/api/usage/models")).json()["data"]
        by_key = {row["key"]: row for row in models}
        assert by_key["mock"]["requests"] == CALLS - 1
        providers = (await admin.get("/api/usage/providers")).json()["data"]
        assert {row["key"] for row in providers} >= {"mock"}
        clients = (await admin.get("/api/usage/clients")).json()["data"]
        assert sum(row["requests"] for row in clients) == CALLS
        only_mock = (await admin.get("/api/usage/summary", params={"model": "mock"})).json()
        assert (only_mock["requests"], only_mock["errors"]) == (CALLS - 1, 0)


async def test_timeseries_by_hour_and_day(used: RunningService) -> None:
    async with signed_in(used) as admin:
        hourly = (await admin.get("/api/usage/timeseries", params={"group_by": "model"})).json()
        assert hourly["bucket"] == "hour"
        assert sum(point["requests"] for point in hourly["data"]) == CALLS
        assert {point["group"] for point in hourly["data"]} == {"mock", "no-such-model"}
        now = int(time.time() * 1000)
        daily = await admin.get(
            "/api/usage/timeseries",
            params={
                "bucket": "day",
                "from": now - 30 * 86_400_000,
                "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now / 1000 + 3600)),
            },
        )
        assert daily.status_code == 200
        (point,) = daily.json()["data"]
        assert point["t_ms"] % 86_400_000 == 0


async def test_the_request_log_pages_with_a_cursor(used: RunningService) -> None:
    async with signed_in(used) as admin:
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = (await admin.get("/api/usage/requests", params=params)).json()
            seen += [row["id"] for row in page["data"]]
            assert all("request_body" not in row for row in page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == CALLS
        assert seen == sorted(seen, reverse=True)
        errors = (await admin.get("/api/usage/requests", params={"status": "error"})).json()
        (error,) = errors["data"]
        assert error["model"] == "no-such-model"
        detail = (await admin.get(f"/api/usage/requests/{error['id']}")).json()
        assert detail["http_status"] == 404
        assert "request_body" in detail
        assert (await admin.get("/api/usage/requests/999999")).status_code == 404


async def test_export_streams_every_call_as_csv_and_json(used: RunningService) -> None:
    async with signed_in(used) as admin:
        exported = await admin.get("/api/usage/export", params={"format": "csv"})
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        assert "attachment" in exported.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert len(rows) == CALLS
        assert {row["model"] for row in rows} == {"mock", "no-such-model"}
        lines = (await admin.get("/api/usage/export", params={"format": "json"})).text.splitlines()
        assert [json.loads(line)["ts_ms"] for line in lines] == sorted(
            int(row["ts_ms"]) for row in rows
        )


async def test_the_log_and_the_export_filter_by_endpoint(used: RunningService) -> None:
    now_ms = int(time.time() * 1000)
    record = make_record(0, request_id="via-responses", ts_ms=now_ms, endpoint="responses")
    await used.gateway.logger.record(record)
    await logged(used, CALLS + 1)
    async with signed_in(used) as admin:
        page = (await admin.get("/api/usage/requests", params={"endpoint": "responses"})).json()
        (row,) = page["data"]
        assert (row["request_id"], row["endpoint"]) == ("via-responses", "responses")
        detail = (await admin.get(f"/api/usage/requests/{row['id']}")).json()
        assert detail["endpoint"] == "responses"
        chat = (await admin.get("/api/usage/requests", params={"endpoint": "chat"})).json()
        assert len(chat["data"]) == CALLS
        assert {row["endpoint"] for row in chat["data"]} == {"chat"}
        exported = await admin.get(
            "/api/usage/export", params={"format": "csv", "endpoint": "responses"}
        )
        (line,) = list(csv.DictReader(io.StringIO(exported.text)))
        assert (line["request_id"], line["endpoint"]) == ("via-responses", "responses")
        everything = await admin.get("/api/usage/export", params={"format": "csv"})
        endpoints = [row["endpoint"] for row in csv.DictReader(io.StringIO(everything.text))]
        assert sorted(endpoints) == ["chat"] * CALLS + ["responses"]
        for path in ("/api/usage/requests", "/api/usage/export"):
            answer = await admin.get(path, params={"endpoint": "completions"})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["type"] == "invalid_request_error"
            assert (
                "'endpoint' must be one of chat, responses, messages, embeddings"
                in (error["message"])
            )
            assert "'completions'" in error["message"]


async def test_totals_group_and_filter_by_endpoint_and_instance(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"cluster": {"instance_name": "gw-east"}})
    client = sdk(gateway)
    for _ in range(3):
        await client.chat.completions.create(model="mock", messages=HELLO)
    now_ms = int(time.time() * 1000)
    await gateway.gateway.logger.record(
        make_record(0, request_id="via-messages", ts_ms=now_ms, endpoint="messages")
    )
    await gateway.gateway.logger.record(
        make_record(1, ts_ms=now_ms, endpoint="chat", instance="gw-west")
    )
    await logged(gateway, 5)
    async with signed_in(gateway) as admin:

        async def get(path: str, **params: str) -> dict[str, object]:
            answer = await admin.get(path, params=params)
            assert answer.status_code == 200, answer.text
            body: dict[str, object] = answer.json()
            return body

        endpoints = (await get("/api/usage/endpoints"))["data"]
        assert {row["key"]: row["requests"] for row in endpoints} == {"chat": 4, "messages": 1}  # type: ignore[union-attr, index]
        instances = (await get("/api/usage/instances"))["data"]
        assert {row["key"]: row["requests"] for row in instances} == {"gw-east": 4, "gw-west": 1}  # type: ignore[union-attr, index]
        assert (await get("/api/usage/summary", endpoint="chat", instance="gw-east"))[
            "requests"
        ] == 3
        assert (await get("/api/usage/summary", instance="gw-nowhere"))["requests"] == 0
        series = (await get("/api/usage/timeseries", group_by="instance"))["data"]
        assert {p["group"] for p in series} == {"gw-east", "gw-west"}  # type: ignore[union-attr, index]
        page = (await get("/api/usage/requests", instance="gw-east"))["data"]
        assert len(page) == 4  # type: ignore[arg-type]
        assert {(row["endpoint"], row["instance"]) for row in page} == {  # type: ignore[union-attr, index]
            ("chat", "gw-east"),
            ("messages", "gw-east"),
        }
        detail = await get(f"/api/usage/requests/{page[0]['id']}")  # type: ignore[index]
        assert detail["instance"] == "gw-east"
        exported = await admin.get("/api/usage/export", params={"instance": "gw-west"})
        (line,) = list(csv.DictReader(io.StringIO(exported.text)))
        assert (line["instance"], line["endpoint"]) == ("gw-west", "chat")


async def test_bad_parameters_are_400s(used: RunningService) -> None:
    async with signed_in(used) as admin:
        for path, params in [
            ("/api/usage/summary", {"from": "yesterday"}),
            ("/api/usage/summary", {"from": 10, "to": 5}),
            ("/api/usage/timeseries", {"bucket": "week"}),
            ("/api/usage/timeseries", {"group_by": "color"}),
            ("/api/usage/requests", {"limit": 0}),
            ("/api/usage/requests", {"limit": "many"}),
            ("/api/usage/requests", {"cursor": "!!not-a-cursor!!"}),
            ("/api/usage/requests", {"status": "weird"}),
            ("/api/usage/export", {"format": "xml"}),
            ("/api/usage/summary", {"endpoint": "completions"}),
            ("/api/usage/timeseries", {"group_by": "endpoint", "endpoint": "chat "}),
            ("/api/usage/instances", {"endpoint": "Chat"}),
        ]:
            answer = await admin.get(path, params=params)
            assert answer.status_code == 400, (path, params, answer.text)
            assert answer.json()["error"]["type"] == "invalid_request_error"
        assert (await admin.get("/api/usage/colors")).status_code == 404


async def test_numbers_beyond_64_bits_or_ascii_are_4xx_never_500(used: RunningService) -> None:
    async with signed_in(used) as admin:
        for path in (
            "/api/usage/requests/99999999999999999999999",
            f"/api/usage/requests/{2**63}",
        ):
            answer = await admin.get(path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "request_not_found"
        # "²" passes str.isdigit() but not int(); "٣" is a digit int() reads.
        for path, params in [
            ("/api/usage/requests", {"limit": "²"}),
            ("/api/usage/requests", {"limit": "٣"}),
            ("/api/usage/summary", {"from": "²"}),
            ("/api/usage/summary", {"to": "٣٣"}),
        ]:
            answer = await admin.get(path, params=params)
            assert answer.status_code == 400, (path, params, answer.text)
            assert answer.json()["error"]["type"] == "invalid_request_error"
        # Past Python's 4,300-digit limit int() itself refuses a string of ASCII digits.
        many = "9" * 5000
        answer = await admin.get(f"/api/usage/requests/{many}")
        assert answer.status_code == 404, answer.text
        for name in ("from", "to"):
            answer = await admin.get("/api/usage/summary", params={name: many})
            assert answer.status_code == 400, answer.text
        answer = await admin.get("/api/usage/requests", params={"limit": many})
        assert answer.status_code == 400, answer.text
