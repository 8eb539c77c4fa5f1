"""The budget banner and the pages' budget figures following the live feed (issue 20's
[budget-ui] part), in Debian's Chromium.

The banner's sentences name the budget, its figures and its reset, rounded as the API rounds; a
dismissed alert stays away across a reload until its state changes; the Clients, System and
Providers pages redraw their spend lines when a budget frame arrives, never a form being filled
in. Screenshots land in tests/artifacts/budget-*.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD, StartGateway, logged, sdk, signed_in
from tests.fakes.openai_upstream import FakeOpenAI
from tests.test_ui import browser, ready_admin  # noqa: F401 - the fixture, used by name
from tests.test_ui_budgets import call, new_client, no_overflow, priced_gateway, spend_until_refused
from tests.ui_browser import PHONE, WIDE, BrowserThread

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]


# The banner's sentences and the reset moments, computed by the dashboard's own module in the page.
ALERT_TEXTS = """async () => {
  const { alertText, resetText, budgetState } = await import("/static/js/budgets.js");
  const midnight = Date.UTC(2026, 11, 4);
  const first = Date.UTC(2027, 0, 1);
  return {
    warning: alertText({ scope: "client", id: "c1", name: "acme", period: "day", limit_usd: 5,
      spent_usd: 4.25, percent: 85, state: "warning", resets_at_ms: midnight }),
    exceeded: alertText({ scope: "client", id: "c1", name: "acme", period: "day", limit_usd: 5,
      spent_usd: 5.01, percent: 100.2, state: "exceeded", resets_at_ms: midnight }),
    global: alertText({ scope: "global", id: null, name: null, period: "month", limit_usd: 1000,
      spent_usd: 950, percent: 95, state: "warning", resets_at_ms: first }),
    provider: alertText({ scope: "provider", id: "openai", name: "openai", period: "month",
      limit_usd: 300, spent_usd: 301, percent: 100.3, state: "exceeded", resets_at_ms: first }),
    month: resetText(first, "month"),
    // A live frame carries no percent: the banner's figure must be the API's (69.0 for 68.97).
    rounded: alertText({ scope: "client", id: "c1", name: "acme", period: "day", limit_usd: 2.03,
      spent_usd: 1.4, state: "warning", resets_at_ms: midnight }),
    almost: alertText({ scope: "client", id: "c1", name: "acme", period: "day", limit_usd: 1,
      spent_usd: 0.999, percent: 99.9, state: "warning", resets_at_ms: midnight }),
    states: [budgetState(1, 5, 80), budgetState(4, 5, 80), budgetState(5, 5, 80),
      budgetState(3, null, 80)],
  };
}"""


async def test_the_banners_sentences_name_the_budget_its_figures_and_the_reset(
    browser: BrowserThread,  # noqa: F811 - the fixture
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway()
    tab = await browser.tab(gateway.base_url, WIDE)

    def scenario() -> dict[str, Any]:
        tab.page.goto("/")
        expect(tab.page.get_by_role("heading", name="Sign in")).to_be_visible()
        texts: dict[str, Any] = tab.page.evaluate(ALERT_TEXTS)
        tab.check_errors()
        return texts

    try:
        texts = await browser.run(scenario)
    finally:
        await browser.run(tab.close)
    assert texts["warning"] == (
        "Client 'acme' has used 85% of its daily budget ($4.25 of $5.00), resets 00:00 UTC"
    )
    assert texts["exceeded"] == (
        "Client 'acme' has reached its daily budget ($5.01 of $5.00): "
        "calls are refused until 00:00 UTC"
    )
    assert texts["global"] == (
        "The gateway has used 95% of its global monthly budget ($950.00 of $1,000.00), "
        "resets 00:00 UTC on 1 Jan"
    )
    assert texts["provider"] == (
        "Provider 'openai' has reached its monthly budget ($301.00 of $300.00): "
        "calls to it are refused until 00:00 UTC on 1 Jan"
    )
    assert texts["rounded"].startswith("Client 'acme' has used 69% of its daily budget ($1.40 of")
    assert texts["almost"].startswith("Client 'acme' has used 99% of its daily budget"), (
        "a budget not spent yet never reads 100%"
    )
    assert texts["states"] == ["ok", "warning", "exceeded", "ok"]


async def test_a_dismissed_warning_comes_back_when_the_budget_is_spent_and_unpriced_calls_show(
    browser: BrowserThread,  # noqa: F811 - the fixture
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
) -> None:
    gateway = await priced_gateway(start_gateway, fake_openai)
    await ready_admin(gateway)
    client_id, key = await new_client(gateway, "acme")
    assert await call(gateway, key) is None
    (row,) = await logged(gateway, 1)
    cost = float(row["cost_usd"])  # type: ignore[arg-type]
    # Warned after the second call (69%), spent by the third: room for any estimate under a call.
    async with signed_in(gateway) as admin:
        changed = await admin.put(
            f"/api/clients/{client_id}",
            json={"budget_day_usd": round(2.9 * cost, 2), "budget_warn_percent": 50},
        )
        assert changed.status_code == 200, changed.text
    # Two calls the price list does not know: counted and shown, never free in silence.
    for _ in range(2):
        async with sdk(gateway, key) as client:
            await client.chat.completions.create(
                model="house", messages=[{"role": "user", "content": "hello"}]
            )
    await logged(gateway, 3)
    tab = await browser.tab(gateway.base_url, PHONE, color_scheme="dark")

    def open_clients() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("clients", "Clients")
        expect(page.locator("td.budget").first).to_contain_text("+ 2 unpriced calls")
        expect(page.locator("#budget-alerts")).to_be_hidden()

    def warned_then_dismissed() -> None:
        page = tab.page
        alert = page.locator("#budget-alerts .budget-alert")
        expect(alert).to_have_attribute("data-state", "warning")
        expect(alert).to_contain_text("Client 'acme' has used 69% of its daily budget")
        expect(alert).to_contain_text("resets 00:00 UTC")
        # The spend column follows the banner, without a reload.
        cell = page.locator("td.budget").first
        expect(cell).to_contain_text("69%")
        expect(cell).to_contain_text("warning")
        no_overflow(tab, "the banner at 390 px")
        tab.screenshot("budget-banner-warning-390-dark")
        alert.get_by_role("button", name="Dismiss").click()
        expect(page.locator("#budget-alerts")).to_be_hidden()
        page.reload()
        tab.settled("Clients")
        expect(page.locator("#budget-alerts")).to_be_hidden()

    def back_when_spent() -> None:
        page = tab.page
        alert = page.locator("#budget-alerts .budget-alert")
        expect(alert).to_have_attribute("data-state", "exceeded")
        expect(alert).to_contain_text("Client 'acme' has reached its daily budget")
        tab.check_errors()

    try:
        await browser.run(open_clients)
        assert await call(gateway, key) is None
        await browser.run(warned_then_dismissed)
        assert await call(gateway, key) is None
        await browser.run(back_when_spent)
    finally:
        await browser.run(tab.close)


# Per scope: the API path that sets a budget of a call and a half, the page that shows it, the
# banner's sentence and the spend line on that page.
SCOPES = {
    "global": (
        "/api/budgets/global",
        "day_usd",
        ("system", "System"),
        "The gateway has reached its global daily budget",
        'section.budget-card .period-spend[data-period="day"]',
    ),
    "provider": (
        "/api/budgets/providers/openai",
        "month_usd",
        ("providers", "Providers"),
        "Provider 'openai' has reached its monthly budget",
        '[data-provider-budget="openai"] .period-spend[data-period="month"]',
    ),
}


@pytest.mark.parametrize("scope", list(SCOPES))
async def test_the_global_and_a_providers_budget_follow_the_feed_on_their_pages(
    browser: BrowserThread,  # noqa: F811 - the fixture
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    scope: str,
) -> None:
    path, member, (page_path, title), sentence, line = SCOPES[scope]
    gateway = await priced_gateway(start_gateway, fake_openai)
    await ready_admin(gateway)
    _, key = await new_client(gateway, "acme")
    assert await call(gateway, key) is None
    (row,) = await logged(gateway, 1)
    cost = float(row["cost_usd"])  # type: ignore[arg-type]
    async with signed_in(gateway) as admin:
        changed = await admin.put(path, json={member: round(2.5 * cost, 2), "warn_percent": 50})
        assert changed.status_code == 200, changed.text
    tab = await browser.tab(gateway.base_url, WIDE, color_scheme="light")

    def open_page() -> None:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open(page_path, title)
        expect(tab.page.locator(line)).not_to_contain_text("exceeded")

    def followed() -> None:
        page = tab.page
        expect(page.locator("#budget-alerts .budget-alert.exceeded")).to_contain_text(sentence)
        # The page's own figure says it too, without a reload.
        expect(page.locator(line)).to_contain_text("exceeded")
        tab.screenshot(f"budget-{scope}-exceeded-1400-light")
        tab.check_errors()

    try:
        await browser.run(open_page)
        _, refused = await spend_until_refused(gateway, key)
        assert refused.status_code == 429
        assert refused.response.json()["error"]["code"] == "budget_exceeded"
        await browser.run(followed)
    finally:
        await browser.run(tab.close)
