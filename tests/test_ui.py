"""The dashboard UI in a real browser: Debian's Chromium driven by Playwright.

One Chromium serves the whole module (``browser``, a thread of its own); every test starts its own
gateway in-process and opens fresh browser contexts, so no cookie leaks from one test to the next.
Every step checks that the page logged no console error (a CSP violation is one) and threw no
exception. Screenshots of every page, wide and phone-sized, land in tests/artifacts/.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from proxy.service import RunningService
from storage.provider_settings import put_provider_settings
from tests.conftest import (
    ADMIN_PASSWORD,
    CLIENT_KEY,
    StartGateway,
    initial_admin_password,
    logged,
    on_each_backend,
    sdk,
    signed_in,
)
from tests.factories import make_record
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.ui_browser import PHONE, WIDE, BrowserThread, Tab

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

HELLO = [{"role": "user", "content": "hello there gateway"}]
NEW_PASSWORD = "a-brand-new-admin-password"
VIEWER_PASSWORD = "a-long-enough-viewer-password"

OpenTab = Callable[..., Awaitable[Tab]]


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


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    return await start_gateway()


@pytest.fixture
async def tabs(browser: BrowserThread, dashboard: RunningService) -> AsyncIterator[OpenTab]:
    """Open browser tabs on the dashboard (``await tabs(width=...)``); closed after the test."""
    opened: list[Tab] = []

    async def open_tab(width: int = WIDE, **options: Any) -> Tab:
        tab = await browser.tab(dashboard.base_url, width, **options)
        opened.append(tab)
        return tab

    try:
        yield open_tab
    finally:
        for tab in opened:
            await browser.run(tab.close)


async def ready_admin(gateway: RunningService) -> None:
    """The first admin with ``ADMIN_PASSWORD`` (its forced change done through the API)."""
    async with signed_in(gateway):
        pass


async def chat(gateway: RunningService, key: str = CLIENT_KEY) -> str:
    """One call to the mock model; its request id."""
    async with sdk(gateway, key) as client:
        raw = await client.chat.completions.with_raw_response.create(model="mock", messages=HELLO)
    assert raw.http_response.status_code == 200
    return raw.headers["x-request-id"]


async def some_traffic(gateway: RunningService, calls: int = 3) -> None:
    for _ in range(calls):
        await chat(gateway)
    await logged(gateway, calls)


# -- signing in ------------------------------------------------------------------------------------


async def test_signing_in_leads_back_to_the_page_asked_for(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    tab = await tabs()
    # The failed sign-in's 401 is the point of this test.
    tab.allowed.append(("/api/auth/login", 401))

    def scenario() -> None:
        page = tab.page
        page.goto("/#/analytics")
        expect(page).to_have_url(re.compile(r"#/login\?next=analytics$"))
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        # Keyboard only: the username field has focus, Tab moves on, Enter submits.
        expect(page.get_by_label("Username")).to_be_focused()
        page.keyboard.type("admin")
        page.keyboard.press("Tab")
        page.keyboard.type("not-the-password")
        page.keyboard.press("Enter")
        expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
        expect(page).to_have_url(re.compile(r"#/login"))

        page.get_by_label("Password", exact=True).fill(ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        tab.settled("Analytics")
        expect(page.locator("#who")).to_contain_text("admin")
        tab.check_errors()

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.goto("/#/clients")
        expect(page).to_have_url(re.compile(r"#/login\?next=clients$"))
        tab.check_errors()

    await browser.run(scenario)


async def test_the_first_sign_in_forces_a_password_change(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    one_time = initial_admin_password(dashboard)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        tab.sign_in("admin", one_time, lands=None)
        expect(page).to_have_url(re.compile(r"#/change-password$"))
        expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
        # No way around it: another page sends the user back, with no navigation shown.
        page.goto("/#/clients")
        expect(page).to_have_url(re.compile(r"#/change-password$"))
        expect(page.locator("#nav a")).to_have_count(0)

        page.get_by_label("Current password").fill(one_time)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD + "x")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("alert")).to_contain_text("differ")

        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        tab.settled("Overview")
        expect(page.locator("#nav").get_by_role("link", name="Clients")).to_be_visible()
        # Still signed in after a reload: the session cookie carries on.
        page.reload()
        tab.settled("Overview")
        tab.check_errors()

    await browser.run(scenario)
    # The new password is the one that works now.
    async with signed_in(dashboard, "admin", NEW_PASSWORD) as admin:
        answer = await admin.get("/api/auth/status")
    assert answer.json()["session"]["must_change_password"] is False


# -- every page ------------------------------------------------------------------------------------


def walk_every_page(tab: Tab, label: str, width: int) -> list[str]:
    """Visit every page through the navigation; check and screenshot each. Returns the pages."""
    page = tab.page
    tab.open("overview", "Overview")
    nav = page.locator("#nav a")
    names = nav.all_text_contents()
    assert names, "the navigation shows no links"
    toggle = page.locator(".menu-toggle")
    problems: list[str] = []
    for name in names:
        # By CSS, not role: a folded menu's links are out of the accessibility tree.
        link = nav.filter(has_text=re.compile(rf"^{re.escape(name)}$"))
        if not page.url.endswith(link.get_attribute("href") or "?"):
            if not link.is_visible():
                # Phone width: the navigation folds behind the menu button.
                toggle.click()
                expect(link).to_be_visible()
            link.click()
        tab.settled(name)
        if toggle.is_visible():
            # Leaving a page closes the menu; the button must say so to screen readers too.
            expect(link).to_be_hidden()
            if toggle.get_attribute("aria-expanded") != "false":
                problems.append(
                    f"{name}: the menu closed on navigation but .menu-toggle still has "
                    f"aria-expanded={toggle.get_attribute('aria-expanded')}"
                )
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        tab.screenshot(f"{label}-{slug}-{width}")
        tab.check_errors()
        if width <= PHONE and (why := tab.overflow()):
            problems.append(f"{name} at {width} px scrolls sideways: {why}")
    assert not problems, "\n".join(problems)
    return names


async def test_every_page_renders_cleanly_wide_and_on_a_phone(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard)
    async with signed_in(dashboard) as admin:
        made = await admin.post("/api/clients", json={"name": "billing-service"})
        assert made.status_code == 201, made.text
    await chat(dashboard, made.json()["token"])
    await logged(dashboard, 4)

    seen: dict[str, list[str]] = {}
    # The system's dark scheme too: the pages follow it through CSS variables.
    for label, width, scheme in (
        ("admin", WIDE, "light"),
        ("admin-dark", WIDE, "dark"),
        ("admin", PHONE, "light"),
    ):
        tab = await tabs(width, color_scheme=scheme)

        def scenario(tab: Tab = tab, label: str = label, width: int = width) -> list[str]:
            tab.sign_in("admin", ADMIN_PASSWORD)
            return walk_every_page(tab, label, width)

        seen[f"{label}-{width}"] = await browser.run(scenario)
    assert seen[f"admin-{WIDE}"] == seen[f"admin-dark-{WIDE}"] == seen[f"admin-{PHONE}"]
    assert seen[f"admin-{WIDE}"] == [
        "Overview",
        "Analytics",
        "Request log",
        "Clients",
        "Providers",
        "Models",
        "Users",
        "System",
    ]


async def test_the_sign_in_pages_at_both_widths(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    one_time = initial_admin_password(dashboard)
    for width in (WIDE, PHONE):
        tab = await tabs(width)

        def scenario(tab: Tab = tab, width: int = width) -> None:
            page = tab.page
            page.goto("/")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            tab.screenshot(f"login-{width}")
            assert tab.overflow() is None, tab.overflow()
            tab.sign_in("admin", one_time, lands=None)
            expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
            tab.screenshot(f"change-password-{width}")
            assert tab.overflow() is None, tab.overflow()
            tab.check_errors()

        await browser.run(scenario)


# -- the flows admins use every day ----------------------------------------------------------------


async def test_a_new_clients_key_is_shown_once_and_works(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    tab = await tabs()

    def create() -> str:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("clients", "Clients")
        page.get_by_label("Name", exact=True).fill("billing-service")
        page.get_by_role("button", name="Create client").click()
        key = page.locator("#new-key")
        expect(key).to_have_value(re.compile(r"^sk-\S{20,}$"))
        expect(page.get_by_role("link", name="billing-service")).to_be_visible()
        tab.screenshot("clients-new-key-1400")
        tab.check_errors()
        return key.input_value()

    secret = await browser.run(create)
    # The key shown is a working key for the new client.
    await chat(dashboard, secret)
    (row,) = await logged(dashboard)
    assert row["client_id"]

    def gone() -> None:
        page = tab.page
        page.get_by_role("button", name="Done, I have saved it").click()
        expect(page.locator("#new-key")).to_have_count(0)
        # Shown once: not after a reload, nor on the client's own page.
        page.reload()
        tab.settled("Clients")
        page.get_by_role("link", name="billing-service").click()
        tab.settled("Clients")
        expect(page.locator("#main")).to_contain_text(row["client_id"])
        for where in ("the client's page", "the list"):
            assert secret not in page.content(), f"the key is shown again on {where}"
            assert page.locator("#new-key").count() == 0
            page.go_back()
            tab.settled("Clients")
        tab.check_errors()

    await browser.run(gone)


async def test_a_call_appears_live_on_the_overview(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    tab = await tabs()

    def open_overview() -> None:
        tab.sign_in("admin", ADMIN_PASSWORD)
        # The feed is connected (its hello arrived) and the recent calls are loaded: a row that
        # shows up from now on came over the WebSocket.
        expect(tab.page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(tab.page.locator("[data-request-id]")).to_have_count(0)

    await browser.run(open_overview)
    request_id = await chat(dashboard)

    def see_it() -> None:
        page = tab.page
        row = page.locator(f'[data-request-id="{request_id}"]')
        expect(row).to_be_visible()
        expect(row).to_contain_text("mock")
        expect(row).to_contain_text("ok")
        tab.screenshot("overview-live-1400")
        tab.check_errors()

    await browser.run(see_it)


async def test_analytics_filters_by_client_and_keeps_the_filter_in_the_address(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    ids: dict[str, str] = {}
    async with signed_in(dashboard) as admin:
        for name, calls in (("alpha", 2), ("beta", 1)):
            made = (await admin.post("/api/clients", json={"name": name})).json()
            ids[name] = made["id"]
            for _ in range(calls):
                await chat(dashboard, made["token"])
    await chat(dashboard)
    await logged(dashboard, 4)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        requests = (
            page.locator("#main .stat")
            .filter(has=page.locator(".stat-label", has_text=re.compile(r"^Requests$")))
            .locator(".stat-value")
        )
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("analytics", "Analytics")
        expect(requests).to_have_text("4")

        page.get_by_label("Client", exact=True).select_option(ids["alpha"])
        expect(page).to_have_url(re.compile(rf"client={re.escape(ids['alpha'])}"))
        expect(requests).to_have_text("2")
        tab.settled("Analytics")
        top = page.get_by_role("region", name="Top clients")
        # By name, the id on hover.
        expect(top).to_contain_text("alpha")
        expect(top).not_to_contain_text("beta")
        tab.screenshot("analytics-filtered-1400")

        # The filter is in the address: a reload (or a shared link) shows the same view.
        page.reload()
        tab.settled("Analytics")
        expect(page.get_by_label("Client", exact=True)).to_have_value(ids["alpha"])
        expect(requests).to_have_text("2")

        page.get_by_label("Client", exact=True).select_option("")
        expect(requests).to_have_text("4")
        tab.check_errors()

    await browser.run(scenario)


async def test_the_request_log_shows_and_filters_by_endpoint(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard, calls=2)
    now_ms = int(time.time() * 1000)
    record = make_record(0, request_id="via-responses", ts_ms=now_ms, endpoint="responses")
    await dashboard.gateway.logger.record(record)
    await logged(dashboard, 3)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        rows = page.locator("#requests-rows tr")
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("requests", "Request log")
        expect(page.locator("#requests-table thead")).to_contain_text("Endpoint")
        expect(rows).to_have_count(3)
        responses_row = page.locator('[data-request-id="via-responses"]')
        expect(responses_row.locator('td[data-label="Endpoint"]')).to_have_text("responses")
        expect(rows.locator('td[data-label="Endpoint"]', has_text="chat")).to_have_count(2)

        page.get_by_label("Endpoint", exact=True).select_option("responses")
        expect(page).to_have_url(re.compile(r"endpoint=responses"))
        expect(rows).to_have_count(1)
        expect(responses_row).to_be_visible()
        tab.screenshot("requests-by-endpoint-1400")

        # The filter is in the address, and the details say where the call came through.
        page.reload()
        tab.settled("Request log")
        expect(page.get_by_label("Endpoint", exact=True)).to_have_value("responses")
        expect(rows).to_have_count(1)
        responses_row.locator("a").click()
        expect(page.locator("#request-detail")).to_contain_text("Endpoint")
        expect(page.locator("#request-detail dl")).to_contain_text("responses")
        page.locator("#rq-back").click()
        expect(page.get_by_label("Endpoint", exact=True)).to_have_value("responses")
        page.get_by_label("Endpoint", exact=True).select_option("")
        expect(rows).to_have_count(3)
        tab.check_errors()

    await browser.run(scenario)


@on_each_backend
async def test_a_backup_from_the_system_page(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab, backend: dict[str, Any]
) -> None:
    await ready_admin(dashboard)
    await some_traffic(dashboard, 1)
    tab = await tabs()
    url = backend.get("storage", {}).get("url")

    def scenario() -> str:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("system", "System")
        # Where the data lives: the SQLite file, or the PostgreSQL server without its password.
        where = page.locator("p.hint").filter(has_text=re.compile("^Database"))
        if url is None:
            expect(where).to_contain_text("Database file: ")
        else:
            expect(where).to_contain_text("Database: postgresql://")
            assert urlsplit(url).password not in page.content()
        page.get_by_role("button", name="Back up now").click()
        result = page.locator(".backup-result")
        expect(result).to_be_visible()
        expect(result).to_contain_text(re.compile(r"backups/\S+"))
        shown = re.search(r"(/\S+)", result.inner_text())
        assert shown, result.inner_text()
        # The list of backups below has it too.
        expect(page.locator("#main table").filter(has_text=shown.group(1))).to_have_count(1)
        tab.settled("System")
        tab.screenshot("system-backup-1400")
        tab.check_errors()
        return shown.group(1)

    shown = await browser.run(scenario)
    async with signed_in(dashboard) as admin:
        listed = (await admin.get("/api/system/backups")).json()["data"]
    assert [entry["path"] for entry in listed] == [shown]
    assert Path(shown).stat().st_size > 0


async def test_an_alias_made_on_the_models_page_answers_calls(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("models", "Models")
        page.get_by_label("Alias", exact=True).fill("team-chat")
        page.get_by_label("Provider", exact=True).select_option("mock")
        page.get_by_label("Provider's model").fill("mock")
        page.get_by_role("button", name="Create alias").click()
        expect(page.locator(".notice.ok")).to_contain_text("team-chat now routes to mock/mock")
        expect(page.locator('tr[data-model="team-chat"]')).to_have_count(1)
        tab.check_errors()

    await browser.run(scenario)
    answer = await sdk(dashboard).chat.completions.create(
        model="team-chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "echo: hi"


async def test_a_viewer_sees_no_controls_that_change_anything(
    browser: BrowserThread, dashboard: RunningService, tabs: OpenTab
) -> None:
    await ready_admin(dashboard)
    async with signed_in(dashboard) as admin:
        made = await admin.post(
            "/api/users", json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD}
        )
        assert made.status_code == 201, made.text
        assert (await admin.post("/api/clients", json={"name": "alpha"})).status_code == 201
    await some_traffic(dashboard, 1)
    tab = await tabs()

    def scenario() -> None:
        page = tab.page
        # An admin-made user changes the password the admin chose for it first.
        tab.sign_in("vera", VIEWER_PASSWORD, lands=None)
        if "change-password" in page.url:
            page.get_by_label("Current password").fill(VIEWER_PASSWORD)
            page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
            page.get_by_label("New password again").fill(NEW_PASSWORD)
            page.get_by_role("button", name="Change password").click()
        tab.settled("Overview")
        expect(page.locator("#nav").get_by_role("link", name="Users")).to_have_count(0)
        for path, title in (
            ("clients", "Clients"),
            ("providers", "Providers"),
            ("models", "Models"),
            ("system", "System"),
        ):
            tab.open(path, title)
            # Navigation controls (links, refresh, "Try again") are fine; forms and actions not.
            assert page.locator("#main form").count() == 0, f"{title} shows a form to a viewer"
            actions = [
                text
                for text in page.locator("#main button").all_inner_texts()
                if text.strip() not in {"Refresh", "Copy"}
            ]
            assert not actions, f"{title} shows a viewer the buttons {actions}"
            tab.screenshot(f"viewer-{path}-1400")
        page.goto("/#/users")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        tab.check_errors()

    await browser.run(scenario)


async def test_the_providers_page_says_where_a_key_may_go_and_refuses_elsewhere(
    browser: BrowserThread, start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {"providers": {"openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}}}
    )
    home = f"http://127.0.0.1:{httpx.URL(fake_openai.base_url).port}"
    # An override stored before keys were bound to origins.
    await gateway.gateway.writer.execute(
        partial(
            put_provider_settings, provider="openai", base_url="http://127.0.0.1:9/v1", now_ms=1
        )
    )
    await ready_admin(gateway)
    tab = await browser.tab(gateway.base_url, WIDE)
    # The refused save below is the app working as designed.
    tab.allowed.append(("/api/providers/openai", 400))

    def scenario() -> None:
        page = tab.page
        tab.sign_in("admin", ADMIN_PASSWORD)
        tab.open("providers", "Providers")
        card = page.locator('.provider-card[data-provider="openai"]')
        expect(card).to_contain_text(f"Key sent only to{home}")
        expect(card.locator(".warn-notice")).to_contain_text(
            "Base URL override not applied: Provider openai's API key"
        )
        card.locator("summary", has_text="Connection settings").click()
        card.get_by_label("Base URL").fill("https://elsewhere.example/v1")
        card.get_by_role("button", name="Save connection").click()
        expect(card.locator(".notice.error")).to_contain_text(
            "[providers.openai] allowed_base_urls"
        )
        tab.screenshot("providers-key-origins-1400")
        tab.check_errors()

    try:
        await browser.run(scenario)
    finally:
        await browser.run(tab.close)
    assert fake_openai.received == []
