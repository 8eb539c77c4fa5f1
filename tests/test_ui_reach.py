"""[reach] The Providers page's reachability badge in Chromium: an Ollama with nothing listening
reads "Unreachable — connection refused, N s ago", never healthy; a provider that answered a call
reads "Last call 200, N s ago"."""

from __future__ import annotations

import re

import trio

from tests.conftest import ADMIN_PASSWORD, StartGateway, signed_in
from tests.test_provider_reach import closed_port
from tests.test_ui import (
    browser,  # noqa: F401 - the fixture, shared with test_ui
    chat,
    ready_admin,
)
from tests.ui_browser import PHONE, WIDE, BrowserThread

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]


async def test_the_badge_says_unreachable_with_the_reason_and_age(
    browser: BrowserThread,  # noqa: F811
    start_gateway: StartGateway,
) -> None:
    port = closed_port()
    gateway = await start_gateway(
        {
            "providers": {
                # No idle probe within the test: Ollama's own model polling finds it out, and
                # the mock's badge stays the call's.
                "reachability_probe_interval_s": 3600,
                "ollama": {"enabled": True, "base_url": f"http://127.0.0.1:{port}"},
                "mock": {"enabled": True},
            }
        }
    )
    await ready_admin(gateway)
    await chat(gateway)
    async with signed_in(gateway) as client:
        with trio.fail_after(10):
            while True:
                listing = (await client.get("/api/providers")).json()["data"]
                ollama = next(p for p in listing if p["name"] == "ollama")
                if ollama["statistics"]["reachability"]["state"] != "unknown":
                    break
                await trio.sleep(0.05)
    for width in (WIDE, PHONE):
        tab = await browser.tab(gateway.base_url, width)

        def scenario(tab=tab, width=width) -> None:  # type: ignore[no-untyped-def]
            page = tab.page
            tab.sign_in("admin", ADMIN_PASSWORD)
            tab.open("providers", "Providers")
            down = page.locator('.provider-card[data-provider="ollama"] .reach-badge')
            expect(down).to_have_text(re.compile(r"^Unreachable — connection refused, \d+ s ago$"))
            expect(down).to_have_attribute("data-reach", "unreachable")
            expect(down).to_have_class(re.compile(r"\bbad\b"))
            up = page.locator('.provider-card[data-provider="mock"] .reach-badge')
            expect(up).to_have_text(re.compile(r"^Last call 200, \d+ s ago$"))
            expect(up).to_have_class(re.compile(r"\bok\b"))
            # The Overview's cards and the System page say the same.
            tab.open("", "Overview")
            expect(
                page.locator('.provider-card[data-provider="ollama"] .reach-badge')
            ).to_have_attribute("data-reach", "unreachable")
            tab.open("system", "System")
            expect(page.locator(".reach-badge[data-reach=unreachable]")).to_have_count(1)
            tab.open("providers", "Providers")
            tab.screenshot(f"providers-reach-{width}")
            assert tab.overflow() is None, tab.overflow()
            tab.check_errors()

        try:
            await browser.run(scenario)
        finally:
            await browser.run(tab.close)
