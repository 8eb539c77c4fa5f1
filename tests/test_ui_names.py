"""[names] The dashboard shows clients by name, with the id on hover and in a call's details;
renaming a client on the Clients page shows the new name everywhere."""

from __future__ import annotations

import re

from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, logged, signed_in
from tests.test_ui import (  # noqa: F401 - fixtures
    OpenTab,
    browser,
    chat,
    dashboard,
    ready_admin,
    tabs,
)
from tests.ui_browser import BrowserThread

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

NAME = "Billing team"
NEW_NAME = "Payments team"


async def test_clients_appear_by_name_on_every_page_and_a_rename_shows(
    browser: BrowserThread,  # noqa: F811
    dashboard: RunningService,  # noqa: F811
    tabs: OpenTab,  # noqa: F811
) -> None:
    await ready_admin(dashboard)
    async with signed_in(dashboard) as admin:
        made = (await admin.post("/api/clients", json={"name": NAME})).json()
    client_id, key = made["id"], made["token"]
    await chat(dashboard, key)
    await chat(dashboard)  # the configured static key: keeps its "static" label
    await logged(dashboard, 2)
    tab = await tabs()

    def named(where: object, name: str) -> None:
        """``where`` shows ``name`` with the id on hover, never the id as text."""
        label = where.locator(".client-name", has_text=name).first  # type: ignore[attr-defined]
        expect(label).to_be_visible()
        expect(label).to_have_attribute("title", client_id)
        expect(where).not_to_contain_text(client_id)  # type: ignore[arg-type]

    def overview_and_log() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        named(page.locator("#main"), NAME)
        expect(page.locator("#main")).to_contain_text("static")
        tab.screenshot("names-overview-1400")

        tab.open("analytics", "Analytics")
        named(page.get_by_role("region", name="Top clients"), NAME)
        # The client filter lists names; its value is still the id (links keep working).
        option = page.get_by_label("Client", exact=True).locator(f'option[value="{client_id}"]')
        expect(option).to_have_text(NAME)
        tab.screenshot("names-analytics-1400")

        tab.open("requests", "Request log")
        log = page.locator("#main table")
        named(log, NAME)
        tab.screenshot("names-requests-1400")
        log.locator("tr", has_text=NAME).locator("a").first.click()
        tab.settled("Request log")
        details = page.locator("#main")
        # The details give both: the name, and the id to search for elsewhere.
        expect(details.locator(".client-name", has_text=NAME)).to_be_visible()
        expect(details).to_contain_text(client_id)
        tab.screenshot("names-call-details-1400")
        tab.check_errors()

    await browser.run(overview_and_log)

    def rename() -> None:
        page = tab.page
        tab.open(f"clients?id={client_id}", "Clients")
        page.get_by_label("Name", exact=True).fill(NEW_NAME)
        page.get_by_role("button", name="Save changes").click()
        expect(page.locator("#page-title")).to_have_text(NEW_NAME)
        tab.screenshot("names-renamed-1400")
        tab.open("requests", "Request log")
        named(page.locator("#main table"), NEW_NAME)
        expect(page.locator("#main table")).not_to_contain_text(NAME)
        tab.open("", "Overview")
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        tab.check_errors()

    await browser.run(rename)
    request_id = await chat(dashboard, key)

    def live_row_has_the_new_name() -> None:
        row = tab.page.locator(f'[data-request-id="{request_id}"]')
        named(row, NEW_NAME)
        expect(row.locator(".client-name")).to_have_text(re.compile(f"^{NEW_NAME}$"))
        tab.screenshot("names-overview-renamed-1400")
        tab.check_errors()

    await browser.run(live_row_has_the_new_name)
