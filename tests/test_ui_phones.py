"""Every data table of every page on a phone (390 × 844): rows become stacked cards.

A table clipped to two or three columns inside a sideways scroller hides status, cost, latency and
the actions. Below the breakpoint each row is a card with one line per cell, labelled by its
``data-label``; nothing is wider than the screen and the buttons in a card work. At desktop width
the tables stay tables. Screenshots land in tests/artifacts/ as ``phone-<page>-390.png``.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, logged, signed_in
from tests.factories import make_record
from tests.test_ui import (  # noqa: F401 - fixtures used by name
    VIEWER_PASSWORD,
    OpenTab,
    browser,
    chat,
    dashboard,
    ready_admin,
    some_traffic,
    tabs,
)
from tests.ui_browser import BrowserThread, Tab

try:
    from playwright.sync_api import ViewportSize, expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

PHONE_SIZE: ViewportSize = {"width": 390, "height": 844}
DESKTOP_SIZE: ViewportSize = {"width": 1440, "height": 900}
FAILED_CALL = "phone-fallback"
FAILED_ATTEMPTS = [
    {"provider": "openai", "model": "gpt-4o-mini", "status": 503, "error": "upstream overloaded"}
]

# What is wrong with the tables on the page at the viewport's width: a list of sentences.
CARD_PROBLEMS = """() => {
  const width = window.innerWidth;
  const problems = [];
  const say = (el, text) => {
    const table = el.closest("table");
    problems.push(`${table.id ? "#" + table.id : "a table"}: ${text}`);
  };
  const right = (el) => Math.round(el.getBoundingClientRect().right);
  const shown = (el) => el.getClientRects().length > 0;
  const outside = (el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && (box.left < -0.5 || box.right > width + 0.5);
  };
  const pageWidth = document.documentElement.scrollWidth;
  if (pageWidth > width) problems.push(`the page is ${pageWidth} px wide for ${width}`);
  for (const table of document.querySelectorAll("#main table")) {
    if (outside(table)) say(table, `the table reaches ${right(table)} px`);
    const head = table.querySelector("thead");
    if (head && head.getBoundingClientRect().height > 1) say(table, "shows its header row");
    const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      if (!shown(row)) continue; // hidden (a folded edit row)
      if (row.children.length === headings.length) {
        [...row.children].forEach((cell, i) => {
          const label = cell.getAttribute("data-label");
          if (label !== null && label !== headings[i]) {
            say(cell, `the card says "${label}" where the table's heading says "${headings[i]}"`);
          }
        });
      }
      if (outside(row)) say(row, `a row reaches ${right(row)} px`);
      for (const cell of row.children) {
        if (!shown(cell)) continue;
        if (outside(cell)) say(cell, `a cell reaches ${right(cell)} px`);
        const label = cell.getAttribute("data-label");
        if (label === null) {
          if (!cell.hasAttribute("colspan")) {
            say(cell, `a cell has no data-label: ${cell.textContent.slice(0, 40)}`);
          }
          continue;
        }
        const before = getComputedStyle(cell, "::before");
        const visible = before.display !== "none" && before.visibility !== "hidden";
        if (!visible || before.content !== JSON.stringify(label)) {
          say(cell, `the cell "${label}" shows no label (${before.content}, ${before.display})`);
        }
      }
      for (const control of row.querySelectorAll("button, a, input, select")) {
        if (shown(control) && outside(control)) {
          say(control, `"${control.textContent.trim()}" is off-screen at ${right(control)} px`);
        }
      }
    }
  }
  return problems;
}"""

# How the tables are laid out: [table id or page position, the display of its first cell].
CELL_DISPLAYS = """() => [...document.querySelectorAll("#main table")].map((table, i) => {
  const cell = table.querySelector("tbody td[data-label]");
  const head = table.querySelector("thead");
  return [table.id || `table ${i}`, cell ? getComputedStyle(cell).display : null,
          head ? head.getBoundingClientRect().height : null];
})"""


async def seed_every_table(gateway: RunningService) -> dict[str, str]:
    """Traffic, a client with two keys, a viewer, a backup and a call with a failed attempt."""
    await ready_admin(gateway)
    await some_traffic(gateway, 2)
    async with signed_in(gateway) as admin:
        made = await admin.post(
            "/api/clients", json={"name": "billing-service", "rate_limit_per_minute": 60}
        )
        assert made.status_code == 201, made.text
        client = made.json()
        extra = await admin.post(f"/api/clients/{client['id']}/tokens", json={"name": "spare"})
        assert extra.status_code == 201, extra.text
        user = await admin.post(
            "/api/users", json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD}
        )
        assert user.status_code == 201, user.text
        backup = await admin.post("/api/system/backup")
        assert backup.status_code in (200, 201), backup.text
    await chat(gateway, client["token"])
    record = make_record(
        0,
        request_id=FAILED_CALL,
        ts_ms=int(time.time() * 1000),
        client_id=client["id"],
        provider="mock",
        model="mock",
        attempts=2,
        failed_attempts=json.dumps(FAILED_ATTEMPTS),
    )
    await gateway.gateway.logger.record(record)
    await logged(gateway, 4)
    return {"client": client["id"], "spare": extra.json()["masked"]}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def check_cards(tab: Tab, name: str, problems: list[str], *, tables: bool = True) -> None:
    """The page's tables are within the screen as labelled cards; screenshot it."""
    page = tab.page
    if tables and page.locator("#main table").count() == 0:
        problems.append(f"{name}: no table to check (the seed data did not reach it)")
    problems.extend(f"{name}: {p}" for p in page.evaluate(CARD_PROBLEMS))
    # Cards keep the table's meaning for screen readers: a table of rows of labelled cells.
    shown = page.locator("#main table").count()
    if page.get_by_role("table").count() != shown:
        problems.append(f"{name}: {page.get_by_role('table').count()} of {shown} tables are tables")
    cells = page.evaluate(
        """() => [...document.querySelectorAll("#main tbody td[data-label]")]
            .filter((cell) => cell.getClientRects().length).length"""
    )
    if page.locator("#main").get_by_role("cell").count() < cells:
        problems.append(f"{name}: the cards' cells are not table cells to a screen reader")
    tab.screenshot(f"phone-{slug(name)}-390")
    page.emulate_media(color_scheme="dark")
    tab.screenshot(f"phone-dark-{slug(name)}-390")
    page.emulate_media(color_scheme="light")
    tab.check_errors()


async def test_every_table_is_a_column_of_cards_on_a_phone(
    browser: BrowserThread,  # noqa: F811 - the fixture
    dashboard: RunningService,  # noqa: F811 - the fixture
    tabs: OpenTab,  # noqa: F811 - the fixture
) -> None:
    seeded = await seed_every_table(dashboard)
    tab = await tabs()

    def scenario() -> list[str]:
        page = tab.page
        page.set_viewport_size(PHONE_SIZE)
        problems: list[str] = []
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(page.locator("#live-rows tr[data-request-id]")).to_have_count(4)
        check_cards(tab, "Overview", problems)
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
            # The providers page is cards already (one per provider), with no table.
            check_cards(tab, title, problems, tables=title != "Providers")
            if title == "Request log":
                # The value keeps its spaces beside its label (badge, space, HTTP status).
                status = page.locator('#requests-rows td[data-label="Status"]').first
                if status.inner_text().strip() != "ok 200":
                    problems.append(f"Request log: the status reads {status.inner_text()!r}")

        # A model's price form opens inside its card and fits too.
        tab.open("models", "Models")
        page.get_by_role("button", name="Edit prices").first.click()
        expect(page.get_by_role("button", name="Save prices").first).to_be_visible()
        check_cards(tab, "Model prices", problems)

        # A call's details, with its failed attempt, reached by tapping its card in the log.
        tab.open("requests", "Request log")
        page.locator(f'[data-request-id="{FAILED_CALL}"] a').click()
        expect(page.locator("#failed-attempts")).to_contain_text("upstream overloaded")
        check_cards(tab, "Call details", problems)

        # The client's page: its keys as cards, and Revoke works from a card.
        tab.open(f"clients?id={seeded['client']}", "Clients")
        expect(page.locator("#main table").first).to_be_visible()
        check_cards(tab, "Client", problems)
        card = page.locator("#main tbody tr", has_text=seeded["spare"])
        card.get_by_role("button", name="Revoke").click()
        card.get_by_role("button", name="Yes, revoke").click()
        expect(page.locator(".notice.ok")).to_contain_text(f"Key {seeded['spare']} revoked.")
        tab.check_errors()
        return problems

    problems = await browser.run(scenario)
    assert not problems, "\n".join(problems)
    async with signed_in(dashboard) as admin:
        keys = (await admin.get(f"/api/clients/{seeded['client']}/tokens")).json()["data"]
    assert [k["revoked"] for k in keys if k["masked"] == seeded["spare"]] == [True]


async def test_at_desktop_width_the_tables_stay_tables(
    browser: BrowserThread,  # noqa: F811 - the fixture
    dashboard: RunningService,  # noqa: F811 - the fixture
    tabs: OpenTab,  # noqa: F811 - the fixture
) -> None:
    seeded = await seed_every_table(dashboard)
    tab = await tabs()

    def scenario() -> list[Any]:
        page = tab.page
        page.set_viewport_size(DESKTOP_SIZE)
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(page.locator("#live-rows tr[data-request-id]")).to_have_count(4)
        layouts = list(page.evaluate(CELL_DISPLAYS))
        for path, title in (
            ("requests", "Request log"),
            (f"clients?id={seeded['client']}", "Clients"),
            ("models", "Models"),
            ("users", "Users"),
            ("system", "System"),
        ):
            tab.open(path, title)
            expect(page.locator("#main table").first).to_be_visible()
            layouts += page.evaluate(CELL_DISPLAYS)
        tab.check_errors()
        return layouts

    layouts = await browser.run(scenario)
    assert len(layouts) >= 6, layouts
    assert all(display in ("table-cell", None) for _, display, _ in layouts), layouts
    assert all(head is None or head > 10 for _, _, head in layouts), layouts
