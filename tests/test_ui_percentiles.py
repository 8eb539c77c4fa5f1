"""[percentiles] The Analytics page's p95 in a real browser: never above the slowest call."""

from __future__ import annotations

import re

from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, logged
from tests.test_ui import (  # noqa: F401 - the fixtures of the browser tests
    OpenTab,
    browser,
    chat,
    dashboard,
    expect,
    ready_admin,
    tabs,
)
from tests.ui_browser import BrowserThread

CALLS = 12


def _shown_ms(text: str) -> float:
    """Milliseconds from the dashboard's duration text ("1.9 ms", "48 ms", "1.25 s")."""
    match = re.fullmatch(r"([\d.]+) (ms|s)", text.strip())
    assert match, text
    return float(match[1]) * (1000 if match[2] == "s" else 1)


async def test_the_p95_is_never_above_the_slowest_call(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    for _ in range(CALLS):
        await chat(dashboard)
    rows = await logged(dashboard, CALLS)
    slowest = max(float(str(row["latency_ms"])) for row in rows)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        p95 = page.locator("#main .stat").filter(
            has=page.locator(".stat-label", has_text=re.compile(r"^p95 latency$"))
        )
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("analytics", "Analytics")
        expect(p95.locator(".stat-value")).to_have_text(re.compile(r"^[\d.]+ m?s$"))
        shown = _shown_ms(p95.locator(".stat-value").inner_text())
        # The page rounds to 0.1 ms below 10 ms: allow that much, never a bucket's width.
        assert shown <= round(slowest, 1) + 0.05, (shown, slowest)
        # A dozen calls: every one is in the log, so the figures are exact and say so.
        expect(p95.locator(".stat-note")).to_have_text(re.compile(r"^p50 [\d.]+ m?s · exact$"))
        tab.screenshot("analytics-p95-1400")
        tab.check_errors()

    await browser.run(scenario)
