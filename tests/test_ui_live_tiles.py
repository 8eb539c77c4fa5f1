"""The Overview's tiles in Chromium: live and exact beside the live table, in-flight counting
model calls only (never the dashboard's own requests)."""

from __future__ import annotations

import time

import trio

from actors.recent_calls import RecentCalls
from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, logged, signed_in
from tests.factories import make_record
from tests.test_ui import (
    OpenTab,
    browser,  # noqa: F401 - the fixture, shared with test_ui
    chat,
    dashboard,  # noqa: F401 - the fixture, shared with test_ui
    ready_admin,
    some_traffic,
    tabs,  # noqa: F401 - the fixture, shared with test_ui
)
from tests.ui_browser import BrowserThread

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

BURST = 12
# The periodic refresh of the day's figures is a minute: anything shown within this is live.
LIVE_S = 10_000


def tile(page: Page, label: str) -> Locator:
    """The value of the Overview's tile labelled ``label``."""
    return page.locator(".stat", has=page.locator(".stat-label", has_text=label)).locator(
        ".stat-value"
    )


async def test_the_tiles_equal_the_live_count_after_a_burst(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard, 2)  # in the rollup before the page opens
    # A short "minute", so the test can see a call leave it (the logger's clock is trio's).
    dashboard.gateway.logger._recent = RecentCalls(window_s=8)  # type: ignore[attr-defined]
    tab = await tabs()

    def open_overview() -> None:
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(tab.page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(tile(tab.page, "Requests today")).to_have_text("2")

    await browser.run(open_overview)
    for _ in range(BURST):
        await chat(dashboard)
    await logged(dashboard, BURST + 2)

    def see_the_burst() -> None:
        page = tab.page
        expect(page.locator("#live-rows [data-request-id]")).to_have_count(BURST + 2)
        expect(tile(page, "Requests today")).to_have_text(str(BURST + 2), timeout=LIVE_S)
        # The short minute was put in place after the first two calls: it holds the burst.
        expect(tile(page, "Requests / min")).to_have_text(str(BURST), timeout=LIVE_S)
        expect(tile(page, "In flight")).to_have_text("0")
        expect(tile(page, "Error rate")).to_have_text("0.0%")
        tab.screenshot("overview-live-tiles-1400")
        tab.check_errors()

    await browser.run(see_the_burst)

    # The dashboard keeps asking the API meanwhile: none of that is a model call in flight.
    async with signed_in(dashboard) as admin, trio.open_nursery() as nursery:

        async def poll() -> None:
            while True:
                await admin.get("/api/system/health")
                await admin.get("/api/usage/summary")

        for _ in range(4):
            nursery.start_soon(poll)

        def in_flight_stays_zero() -> None:
            page = tab.page
            # Each frame the feed sends says 0 (the tile is rewritten on each).
            for _ in range(5):
                expect(tile(page, "In flight")).to_have_text("0")
                page.wait_for_timeout(200)

        await browser.run(in_flight_stays_zero)
        nursery.cancel_scope.cancel()

    def the_minute_empties() -> None:
        page = tab.page
        # Eight seconds after the burst the short minute is empty, with no call and no reload.
        expect(tile(page, "Requests / min")).to_have_text("0", timeout=15_000)
        expect(tile(page, "Requests today")).to_have_text(str(BURST + 2))
        tab.check_errors()

    await browser.run(the_minute_empties)


async def test_a_call_the_feed_never_brought_is_counted_at_the_next_quiet_reread(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard, 2)
    tab = await tabs()

    def open_overview() -> None:
        # The page's timers run on a clock the test moves; the feed and the API stay real.
        tab.page.clock.install()
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(tab.page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(tile(tab.page, "Requests today")).to_have_text("2")

    await browser.run(open_overview)
    # Stored by another process without Redis (or during the page load): no frame for it.
    now_ms = int(time.time() * 1000)
    await dashboard.gateway.writer.write_requests(
        [make_record(0, request_id="unseen", ts_ms=now_ms)]
    )
    await logged(dashboard, 3)

    def reread() -> None:
        page = tab.page
        page.wait_for_timeout(300)
        expect(tile(page, "Requests today")).to_have_text("2")
        page.clock.run_for(61_000)  # the minute's re-read, with no call near it
        expect(tile(page, "Requests today")).to_have_text("3", timeout=LIVE_S)
        tab.check_errors()

    await browser.run(reread)
