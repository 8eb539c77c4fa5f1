"""The fleet in the dashboard, in a real browser: the live table names the instance once a second
one is seen, the System page lists the instances, and a banner on every page says while this
process has lost Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import ADMIN_PASSWORD, StartGateway, signed_in
from tests.redis_server import RedisServer
from tests.test_fleet_feed import ask, fleet_config, fleet_feed_of, until
from tests.ui_browser import BrowserThread

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

# The banner is asked for every 5 s; the link notices an outage at its next round trip (≤ 2 s).
BANNER_WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    try:
        thread = BrowserThread().start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield thread
    finally:
        thread.stop()


async def test_the_fleet_in_the_dashboard(
    browser: BrowserThread, start_gateway: StartGateway, redis: RedisServer
) -> None:
    a = await start_gateway(fleet_config(redis, "alpha"))
    b = await start_gateway(fleet_config(redis, "bravo"))
    async with signed_in(a):
        pass  # the first admin's forced password change, through the API
    tab = await browser.tab(a.base_url)
    try:

        def open_overview() -> None:
            tab.sign_in("admin", ADMIN_PASSWORD)
            expect(tab.page.locator("#live-status")).to_have_attribute("data-state", "live")
            expect(tab.page.locator("#banner")).to_be_hidden()

        await browser.run(open_overview)
        await until(lambda: fleet_feed_of(b).statistics().audience)
        await ask(a)

        def one_instance_no_column() -> None:
            expect(tab.page.locator("#live-rows tr[data-request-id]")).to_have_count(1)
            expect(tab.page.locator("#live-table th", has_text="Instance")).to_be_hidden()

        await browser.run(one_instance_no_column)
        await ask(b)
        presence = a.gateway.presence
        assert presence is not None
        await until(lambda: len(presence.instances()) == 2)  # A's heartbeat has seen B's

        def both_named() -> None:
            page = tab.page
            expect(page.locator("#live-table th", has_text="Instance")).to_be_visible()
            expect(page.locator("#live-rows tr").first).to_contain_text("bravo")
            tab.screenshot("overview-fleet-1400")
            tab.open("system", "System")
            fleet = page.locator("#fleet")
            expect(fleet).to_contain_text("alpha (this one)")
            expect(fleet).to_contain_text("bravo")
            tab.check_errors()

        await browser.run(both_named)
        # Redis stops answering, its data (the sessions) kept, as in a network partition.
        redis.freeze()

        def banner_says_degraded() -> None:
            banner = tab.page.locator("#banner")
            expect(banner).to_be_visible(timeout=BANNER_WAIT_MS)
            expect(banner).to_have_text(
                re.compile(
                    r"Redis unreachable since \d\d:\d\d — limits and sessions are per process"
                )
            )
            tab.screenshot("banner-redis-down-1400")

        await browser.run(banner_says_degraded)
        redis.thaw()

        def banner_gone() -> None:
            expect(tab.page.locator("#banner")).to_be_hidden(timeout=BANNER_WAIT_MS)
            tab.check_errors()

        await browser.run(banner_gone)
    finally:
        await browser.run(tab.close)
