"""How the dashboard reads, in Chromium: money, the cost axis, times on the System page, the
theme switch, the Menu button, base URLs and the price form (issue 20's [ui-look] part).

Screenshots of every page in both themes at 1440 and 390 px land in tests/artifacts/look-*.png.
"""

from __future__ import annotations

import re
import time
from typing import Any

from proxy.service import RunningService
from tests import test_ui
from tests.conftest import ADMIN_PASSWORD, StartGateway, logged
from tests.factories import make_record
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.test_ui import OpenTab, ready_admin, walk_every_page
from tests.ui_browser import PHONE, BrowserThread, Tab

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

# The fixtures of the dashboard's browser tests, shared rather than copied.
browser = test_ui.browser
dashboard = test_ui.dashboard
tabs = test_ui.tabs

WIDE = 1440
HOUR_MS = 3_600_000


async def record_calls(gateway: RunningService, costs: dict[str, float | None]) -> None:
    """One logged call per ``request_id: cost`` (None: unpriced), a minute apart, just now."""
    now_ms = int(time.time() * 1000)
    for i, (request_id, cost) in enumerate(costs.items()):
        # A model no price table knows stays unpriced (the logger prices known models).
        model = "in-house-model" if cost is None else "gpt-4o-mini"
        record = make_record(
            i,
            request_id=request_id,
            ts_ms=now_ms - 60_000 * i,
            client_id=None,
            cost_usd=cost,
            model=model,
            upstream_model=model,
        )
        await gateway.gateway.logger.record(record)
    await logged(gateway, len(costs))


def cost_cell(tab: Tab, request_id: str) -> Any:
    return tab.page.locator(
        f'#requests-rows tr[data-request-id="{request_id}"] td[data-label="Cost"]'
    )


# -- money -----------------------------------------------------------------------------------------


async def test_a_call_that_reported_no_tokens_costs_a_dash_not_unpriced(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    """A call refused before the upstream (a 404 for an unknown model) has no price because
    nothing was billed: "unpriced" would send an operator looking for a missing price."""
    await ready_admin(dashboard)
    now_ms = int(time.time() * 1000)
    refused = make_record(
        0,
        request_id="refused",
        ts_ms=now_ms,
        client_id=None,
        status="error",
        http_status=404,
        model="no-such-model",
        provider=None,
        upstream_model=None,
        prompt_tokens=None,
        completion_tokens=None,
        total_tokens=None,
        cost_usd=None,
    )
    billed = make_record(
        1,
        request_id="billed",
        ts_ms=now_ms - 60_000,
        client_id=None,
        cost_usd=None,
        model="in-house-model",
        upstream_model="in-house-model",
    )
    for record in (refused, billed):
        await dashboard.gateway.logger.record(record)
    await logged(dashboard, 2)
    tab = await tabs(WIDE, locale="en-US")

    def scenario() -> None:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("requests", "Request log")
        expect(cost_cell(tab, "refused")).to_have_text("—")
        expect(cost_cell(tab, "billed").locator(".money")).to_have_text("unpriced")
        cost_cell(tab, "refused").click()
        expect(tab.page.locator(".detail-list dd .money").first).to_have_text("—")

    await browser.run(scenario)


async def test_small_costs_read_with_significant_digits_and_exactly_on_hover(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await record_calls(
        dashboard,
        {
            "tiny": 0.0000123456,
            "small": 0.0031,
            "dollar": 1.24,
            "big": 1234.5,
            "free": 0.0,
            "unknown": None,
        },
    )
    tab = await tabs(WIDE, locale="en-US")

    def scenario() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("requests", "Request log")
        expected = {
            "tiny": ("$0.000012", "$0.0000123456"),
            "small": ("$0.0031", "$0.0031"),
            "dollar": ("$1.24", "$1.24"),
            "big": ("$1,234.50", "$1,234.50"),
            "free": ("$0.00", "$0.00"),
        }
        for request_id, (shown, exact) in expected.items():
            money = cost_cell(tab, request_id).locator(".money")
            expect(money).to_have_text(shown)
            expect(money).to_have_attribute("title", re.compile(rf"^{re.escape(exact)}\b"))
        unpriced = cost_cell(tab, "unknown").locator(".money")
        expect(unpriced).to_have_text("unpriced")
        expect(unpriced).to_have_class(re.compile(r"\bunpriced\b"))
        # Unpriced looks different from a free call, not just reads differently.
        free_colour = (
            cost_cell(tab, "free").locator(".money").evaluate("el => getComputedStyle(el).color")
        )
        assert unpriced.evaluate("el => getComputedStyle(el).color") != free_colour

        # The call's details, the analytics total and its by-model table say the same.
        cost_cell(tab, "tiny").click()
        detail = page.locator(".detail-list dd .money").first
        expect(detail).to_have_text("$0.000012")
        tab.open("analytics", "Analytics")
        total = (
            page.locator("#main .stat")
            .filter(has=page.locator(".stat-label", has_text=re.compile(r"^Cost$")))
            .locator(".money")
        )
        expect(total).to_have_text("$1,235.74")
        expect(total).to_have_attribute("title", re.compile(r"^\$1,235\.7431123456"))
        # The logger's running total on the System page, in the same money.
        tab.open("system", "System")
        logger = page.locator('.actor[data-actor="logger"] div').filter(
            has=page.locator("dt", has_text=re.compile(r"^cost$"))
        )
        expect(logger.locator(".money")).to_have_text("$1,235.74")
        tab.screenshot("look-money-requests-1440")
        tab.check_errors()

    await browser.run(scenario)


async def test_the_cost_axis_labels_each_tick_differently(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    now_ms = int(time.time() * 1000)
    # Hourly costs between $0.0001 and $0.00023: a tick step of $0.00002 or $0.00005.
    for i, cost in enumerate((0.00012, 0.00021, 0.00017, 0.00023, 0.0001, 0.00015)):
        record = make_record(i, request_id=f"hour-{i}", ts_ms=now_ms - i * HOUR_MS, cost_usd=cost)
        await dashboard.gateway.logger.record(record)
    await logged(dashboard, 6)
    tab = await tabs(WIDE, locale="en-US")

    def scenario() -> dict[str, list[str]]:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("analytics", "Analytics")
        canvas = tab.page.locator("#chart-cost")
        expect(canvas).to_be_visible()
        tab.page.wait_for_function(
            "() => window.Chart && Chart.getChart(document.getElementById('chart-cost'))"
        )
        axes: dict[str, list[str]] = tab.page.evaluate(
            """() => Object.fromEntries(["cost", "requests", "tokens"].map((name) => [name,
                 Chart.getChart(document.getElementById(`chart-${name}`)).scales.y.ticks
                   .map((t) => String(t.label))]))"""
        )
        tab.screenshot("look-cost-axis-1440")
        tab.check_errors()
        return axes

    axes = await browser.run(scenario)
    labels = axes["cost"]
    assert len(labels) >= 3, labels
    assert all(label.startswith("$") for label in labels), labels
    # A count axis (one call an hour) repeated "0, 0, 0, 1, 1, 1" the same way.
    for name, ticks in axes.items():
        assert len(set(ticks)) == len(ticks), f"repeated {name} tick labels: {ticks}"


# -- the System page -------------------------------------------------------------------------------


async def test_retentions_last_run_reads_as_a_date_and_an_age(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await dashboard.gateway.retention.prune_once()
    tab = await tabs(WIDE, locale="en-US")

    def scenario() -> tuple[str, str | None]:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("system", "System")
        actor = tab.page.locator('.actor[data-actor="retention"]')
        value = actor.locator(
            "div", has=tab.page.locator("dt", has_text=re.compile(r"^last run"))
        ).locator("dd")
        expect(value).to_be_visible()
        when = value.locator("time")
        expect(when).to_have_count(1)
        tab.check_errors()
        return value.inner_text(), when.get_attribute("datetime")

    text, iso = await browser.run(scenario)
    assert "T" not in text.replace(" ", ""), text  # not "1.8T"
    assert str(time.gmtime().tm_year) in text, text
    assert re.search(r"(now|seconds? ago|minute ago)", text), text
    assert iso is not None
    assert iso.startswith(time.strftime("%Y-", time.gmtime())), iso


# -- the theme switch ------------------------------------------------------------------------------

# Run before any script of the page: what the root element says when <body> starts, that is,
# before anything can be painted.
RECORD_THEME_AT_BODY = """
new MutationObserver((changes, observer) => {
  if (!document.body) return;
  window.themeAtBody = document.documentElement.dataset.theme || "none";
  observer.disconnect();
}).observe(document, { childList: true, subtree: true });
"""


def background(tab: Tab) -> str:
    return str(tab.page.evaluate("() => getComputedStyle(document.body).backgroundColor"))


async def test_the_theme_choice_persists_across_reloads_and_applies_to_every_page(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await record_calls(dashboard, {"charted": 0.002})  # so Analytics draws its charts
    tab = await tabs(WIDE, color_scheme="light")
    dark_bg, light_bg = "rgb(15, 20, 26)", "rgb(246, 247, 249)"

    def scenario() -> None:
        page = tab.page
        page.add_init_script(RECORD_THEME_AT_BODY)
        tab.sign_in("admin", ADMIN_PASSWORD)
        switch = page.get_by_label("Theme")
        expect(switch).to_have_value("system")
        assert background(tab) == light_bg
        switch.select_option("dark")
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
        assert background(tab) == dark_bg

        page.reload()
        tab.settled("Overview")
        expect(page.get_by_label("Theme")).to_have_value("dark")
        assert page.evaluate("() => window.themeAtBody") == "dark", "applied after first paint"
        for path, title in (
            ("analytics", "Analytics"),
            ("requests", "Request log"),
            ("clients", "Clients"),
            ("providers", "Providers"),
            ("models", "Models"),
            ("users", "Users"),
            ("system", "System"),
        ):
            tab.open(path, title)
            assert background(tab) == dark_bg, path
            if path == "analytics":
                # Charts follow a switch too (their colours are read from the variables).
                ticks = "() => Chart.getChart(document.getElementById('chart-cost'))"
                ticks += ".options.scales.y.ticks.color"
                page.wait_for_function("() => window.Chart && Chart.getChart('chart-cost')")
                assert page.evaluate(ticks) == "#9aa6b5"
                page.get_by_label("Theme").select_option("light")
                assert page.evaluate(ticks) == "#5b6675"
                page.get_by_label("Theme").select_option("dark")
            card = page.locator("#main .card").first
            assert card.evaluate("el => getComputedStyle(el).backgroundColor") == (
                "rgb(23, 30, 39)"
            ), path

        # "System" follows the system again; an explicit "light" overrides a dark system.
        page.get_by_label("Theme").select_option("system")
        expect(page.locator("html")).not_to_have_attribute("data-theme", re.compile("."))
        assert background(tab) == light_bg
        page.emulate_media(color_scheme="dark")
        assert background(tab) == dark_bg
        page.get_by_label("Theme").select_option("light")
        assert background(tab) == light_bg
        page.reload()
        tab.settled("System")
        assert background(tab) == light_bg
        assert page.evaluate("() => window.themeAtBody") == "light"
        tab.check_errors()

    await browser.run(scenario)


async def test_every_page_in_both_themes_at_both_widths(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await record_calls(dashboard, {"priced": 0.000042, "unpriced": None, "dollars": 3.5})
    for theme in ("light", "dark"):
        for width in (WIDE, PHONE):
            tab = await tabs(width)

            def scenario(tab: Tab = tab, theme: str = theme, width: int = width) -> None:
                tab.sign_in("admin", ADMIN_PASSWORD)
                tab.page.get_by_label("Theme").select_option(theme)
                walk_every_page(tab, f"look-{theme}", width)

            await browser.run(scenario)


# -- the Menu button, base URLs, the price form ----------------------------------------------------

BUTTON_LOOK = """el => {
  const s = getComputedStyle(el);
  return [s.borderTopLeftRadius, s.borderTopColor, s.borderTopWidth, s.backgroundColor, s.color,
          s.paddingTop, s.paddingLeft, s.fontFamily, s.fontSize];
}"""


async def test_the_menu_button_looks_like_the_other_buttons(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    for theme in ("light", "dark"):
        tab = await tabs(PHONE, color_scheme=theme)

        def scenario(tab: Tab = tab) -> tuple[list[str], list[str]]:
            tab.sign_in("admin", ADMIN_PASSWORD)
            tab.open("providers", "Providers")
            menu = tab.page.locator(".menu-toggle")
            expect(menu).to_be_visible()
            refresh = tab.page.get_by_role("button", name="Refresh")
            return menu.evaluate(BUTTON_LOOK), refresh.evaluate(BUTTON_LOOK)

        menu_look, button_look = await browser.run(scenario)
        assert menu_look == button_look, (theme, menu_look, button_look)


async def test_a_base_url_never_breaks_inside_its_port(
    browser: BrowserThread, start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {"providers": {"openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}}}
    )
    await ready_admin(gateway)
    tab = await browser.tab(gateway.base_url, PHONE)

    def scenario() -> list[str]:
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("providers", "Providers")
        card = tab.page.locator('.provider-card[data-provider="openai"]')
        code = card.locator("dd").filter(has_text="/v1").first
        expect(code).to_be_visible()
        tab.screenshot("look-providers-390")
        # Squeeze the value to every width from 2 to 30 characters: the port always stays on
        # one line, and the whole "host:port" does wherever it fits in the width.
        broken: list[str] = code.evaluate(
            """dd => {
              const text = dd.textContent;
              const authority = /\\/\\/([^/]+)/.exec(text)[1];
              const start = text.indexOf(authority);
              const port = authority.slice(authority.lastIndexOf(":"));
              const lines = (from, length) => {
                const walker = document.createTreeWalker(dd, NodeFilter.SHOW_TEXT);
                let offset = 0, node, first = null, last = null;
                while ((node = walker.nextNode())) {
                  const end = offset + node.length;
                  if (!first && from < end) first = [node, from - offset];
                  if (!last && from + length <= end) last = [node, from + length - offset];
                  offset = end;
                }
                const range = document.createRange();
                range.setStart(...first);
                range.setEnd(...last);
                const rects = [...range.getClientRects()].filter((r) => r.width > 0);
                return { count: new Set(rects.map((r) => Math.round(r.top))).size,
                         width: range.getBoundingClientRect().width };
              };
              dd.style.width = "2000px";
              const whole = lines(start, authority.length).width;
              const bad = [];
              for (let px = 16; px <= 260; px += 3) {
                dd.style.width = px + "px";
                if (lines(start + authority.length - port.length, port.length).count > 1)
                  bad.push(`${px}px: the port ${port} split`);
                if (px > whole + 1 && lines(start, authority.length).count > 1)
                  bad.push(`${px}px: ${authority} split though it fits`);
              }
              dd.style.width = "";
              return bad;
            }"""
        )
        tab.check_errors()
        return broken

    try:
        broken = await browser.run(scenario)
    finally:
        await browser.run(tab.close)
    assert broken == [], broken


async def test_the_price_forms_fields_line_up(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    tab = await tabs(WIDE)

    def scenario() -> dict[str, list[float]]:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("models", "Models")
        page.get_by_role("button", name="Edit prices").first.click()
        form = page.locator("form.price-form").first
        expect(form).to_be_visible()
        tab.screenshot("look-price-form-1440")
        tops: dict[str, list[float]] = {}
        for name, where in (("price", form), ("alias", page.locator("form.new-alias"))):
            for part in ("label", "input, select"):
                boxes = (el.bounding_box() for el in where.locator(part).all())
                tops[f"{name} {part}"] = [box["y"] for box in boxes if box]
        tab.check_errors()
        return tops

    tops = await browser.run(scenario)
    for part, heights in tops.items():
        assert len(heights) == 3, (part, heights)
        assert max(heights) - min(heights) < 1, f"{part} at different heights: {heights}"
