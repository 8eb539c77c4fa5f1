"""[rollup] The endpoint and instance dimensions in a real browser: the request log's Instance
column and filter (only when the range saw more than one instance), the call details, and the
Analytics page grouped by endpoint and by instance."""

from __future__ import annotations

import re
import time

from actors.redis_link import default_instance_name
from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, logged
from tests.factories import make_record
from tests.test_ui import (  # noqa: F401 - the fixtures of the browser tests
    OpenTab,
    browser,
    chat,
    dashboard,
    expect,
    ready_admin,
    some_traffic,
    tabs,
)
from tests.ui_browser import BrowserThread


async def test_the_instance_column_and_filter_appear_with_a_second_instance(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard, calls=2)
    tab = await tabs()

    def one_instance() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("requests", "Request log")
        expect(page.locator("#requests-rows tr")).to_have_count(2)
        # One gateway: no column repeating its name, no filter with one choice.
        expect(page.locator("#requests-table thead")).not_to_contain_text("Instance")
        expect(page.locator("#rq-instance")).to_have_count(0)
        page.locator("#requests-rows tr a").first.click()
        # The details always say which instance served the call.
        expect(page.locator("#request-detail dl")).to_contain_text("Instance")
        tab.check_errors()

    await browser.run(one_instance)
    # A call another instance of the fleet logged into the same database.
    now_ms = int(time.time() * 1000)
    await dashboard.gateway.logger.record(
        make_record(0, request_id="via-west", ts_ms=now_ms, endpoint="messages", instance="gw-west")
    )
    await logged(dashboard, 3)

    def two_instances() -> None:
        page = tab.page
        rows = page.locator("#requests-rows tr")
        tab.open("requests", "Request log")
        expect(rows).to_have_count(3)
        expect(page.locator("#requests-table thead")).to_contain_text("Instance")
        west_row = page.locator('[data-request-id="via-west"]')
        expect(west_row.locator('td[data-label="Instance"]')).to_have_text("gw-west")
        expect(west_row.locator('td[data-label="Endpoint"]')).to_have_text("messages")
        instance = page.get_by_label("Instance", exact=True)
        expect(instance.locator("option")).to_have_count(3)  # any, this gateway, gw-west
        instance.select_option("gw-west")
        expect(page).to_have_url(re.compile(r"instance=gw-west"))
        expect(rows).to_have_count(1)
        tab.screenshot("requests-by-instance-1400")
        # The endpoint filter narrows it further: nothing through /v1/chat/completions there.
        page.get_by_label("Endpoint", exact=True).select_option("chat")
        expect(page.locator("#requests-list")).to_contain_text("No calls match")
        page.get_by_label("Endpoint", exact=True).select_option("messages")
        expect(rows).to_have_count(1)
        west_row.locator("a").click()
        expect(page.locator("#request-detail dl")).to_contain_text("gw-west")
        page.locator("#rq-back").click()
        expect(page.get_by_label("Instance", exact=True)).to_have_value("gw-west")
        tab.check_errors()

    await browser.run(two_instances)


async def test_analytics_groups_by_endpoint_and_instance(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    await chat(dashboard)
    now_ms = int(time.time() * 1000)
    await dashboard.gateway.logger.record(
        make_record(0, ts_ms=now_ms, endpoint="embeddings", instance="gw-west")
    )
    await logged(dashboard, 2)
    tab = await tabs()
    expected = {
        "endpoint": ["chat", "embeddings"],
        "instance": sorted(["gw-west", default_instance_name()]),
    }

    def scenario() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("analytics", "Analytics")
        group = page.get_by_label("Group by", exact=True)
        for value in ("endpoint", "instance"):
            group.select_option(value)
            expect(page).to_have_url(re.compile(rf"group={value}"))
            expect(page.locator("#analytics-content .state.loading")).to_have_count(0)
            expect(page.locator("#chart-requests")).to_be_visible()
            # Each group is a dataset of the requests chart (drawn a task after the page).
            page.wait_for_function(
                """(expected) => {
                  const canvas = document.getElementById("chart-requests");
                  const chart = canvas && window.Chart && Chart.getChart(canvas);
                  if (!chart) return false;
                  const labels = chart.data.datasets.map((d) => d.label).sort();
                  return JSON.stringify(labels) === JSON.stringify(expected);
                }""",
                arg=expected[value],
            )
            tab.screenshot(f"analytics-by-{value}-1400")
        # Filtered to one endpoint: its call alone, kept in the address for a reload.
        requests = page.locator("#analytics-content .stat", has_text="Requests").locator(
            ".stat-value"
        )
        expect(requests).to_have_text("2")
        page.get_by_label("Endpoint", exact=True).select_option("embeddings")
        expect(page).to_have_url(re.compile(r"endpoint=embeddings"))
        expect(requests).to_have_text("1")
        page.reload()
        expect(page.get_by_label("Endpoint", exact=True)).to_have_value("embeddings")
        expect(
            page.locator("#analytics-content .stat", has_text="Requests").locator(".stat-value")
        ).to_have_text("1")
        tab.check_errors()

    await browser.run(scenario)
