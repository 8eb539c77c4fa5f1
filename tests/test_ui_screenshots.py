"""[reach] A screenshot walk of every dashboard page, both widths, both themes, with live traffic.

Calls of every endpoint (chat, streamed chat, responses, messages, embeddings) from several
clients, some of them errors, then every page — Overview, Request log and a call's details,
Analytics, Clients, Providers, Models, Users, System, and the sign-in page — at 1440 × 900 and
390 × 844, light and dark. Each lands in ``tests/artifacts/<page>-<width>-<theme>.png``; on each,
no element may reach outside the viewport (unless a scroller of its own clips it) and the page
may log no console error.
"""

from __future__ import annotations

import re

import anthropic
import openai

from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, CLIENT_KEY, logged, sdk, signed_in
from tests.test_ui import (  # noqa: F401 - fixtures used by name
    browser,
    dashboard,
    ready_admin,
)
from tests.ui_browser import BrowserThread, Tab

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the browser fixture fails with the remedy
    expect = None  # type: ignore[assignment]

SIZES = {1440: 900, 390: 844}
THEMES = ("light", "dark")
THEME_KEY = "llm-proxy.theme"  # web/static/js/theme.js
CLIENT_NAMES = ("billing-service", "search-indexer", "support-bot")
PAGES = (
    ("overview", "", "Overview"),
    ("requests", "requests", "Request log"),
    ("analytics", "analytics", "Analytics"),
    ("clients", "clients", "Clients"),
    ("providers", "providers", "Providers"),
    ("models", "models", "Models"),
    ("users", "users", "Users"),
    ("system", "system", "System"),
)

# Visible elements that reach outside the viewport, unless an ancestor that scrolls or clips
# (overflow other than visible) keeps them in: a list of sentences.
OUTSIDE = """() => {
  const width = window.innerWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push(`the page is ${document.documentElement.scrollWidth} px wide for ${width}`);
  }
  const clipped = (el) => {
    for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
      const style = getComputedStyle(up);
      if (style.overflowX !== "visible" || style.clip !== "auto") return true;
    }
    return false;
  };
  for (const el of document.querySelectorAll("body *")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    if (box.right <= width + 0.5 && box.left >= -0.5) continue;
    if (getComputedStyle(el).visibility === "hidden" || clipped(el)) continue;
    const cls = typeof el.className === "string" && el.className.trim()
      ? "." + el.className.trim().split(/\\s+/).join(".") : "";
    found.push(`${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${cls} spans `
      + `${Math.round(box.left)}..${Math.round(box.right)} px`);
    if (found.length > 8) break;
  }
  return found;
}"""


async def live_traffic(gateway: RunningService) -> None:
    """Calls of every endpoint from three named clients (and the static key), some failing."""
    await ready_admin(gateway)
    tokens = [CLIENT_KEY]
    async with signed_in(gateway) as admin:
        for name in CLIENT_NAMES:
            made = await admin.post("/api/clients", json={"name": name})
            assert made.status_code == 201, made.text
            tokens.append(made.json()["token"])
    calls = 0
    for i, token in enumerate(tokens):
        async with sdk(gateway, token) as client:
            hello = [{"role": "user", "content": f"hello from client {i}"}]
            await client.chat.completions.create(model="mock", messages=hello)  # type: ignore[arg-type]
            stream = await client.chat.completions.create(
                model="mock",
                messages=hello,  # type: ignore[arg-type]
                stream=True,
            )
            async for _ in stream:
                pass
            await client.responses.create(model="mock", input=f"summarise item {i}")
            await client.embeddings.create(model="mock", input=[f"text {i}", "more text"])
            calls += 4
            try:
                await client.chat.completions.create(model="no-such-model", messages=hello)  # type: ignore[arg-type]
            except openai.NotFoundError:
                calls += 1
        async with anthropic.AsyncAnthropic(
            base_url=gateway.base_url, api_key=token, max_retries=0
        ) as claude:
            await claude.messages.create(
                model="mock", max_tokens=64, messages=[{"role": "user", "content": "hi there"}]
            )
            calls += 1
    await logged(gateway, calls)


def outside(tab: Tab) -> list[str]:
    """What reaches outside the viewport on the page shown."""
    found: list[str] = tab.page.evaluate(OUTSIDE)
    return found


def walk(tab: Tab, width: int, theme: str) -> list[str]:
    """Every page at this width and theme: screenshots, and what is wrong on each."""
    page = tab.page
    page.set_viewport_size({"width": width, "height": SIZES[width]})
    problems: list[str] = []

    def shot(name: str) -> None:
        problems.extend(f"{name} {width} {theme}: {p}" for p in outside(tab))
        tab.screenshot(f"{name}-{width}-{theme}")
        try:
            tab.check_errors()
        except AssertionError as error:
            problems.append(f"{name} {width} {theme}: {error}")

    page.goto("/")
    page.evaluate("([key, theme]) => localStorage.setItem(key, theme)", [THEME_KEY, theme])
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("data-theme", theme)
    shot("login")
    tab.sign_in("admin", ADMIN_PASSWORD)
    for name, path, title in PAGES:
        tab.open(path, title)
        if name == "overview":
            expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        if name == "analytics":
            expect(page.locator("#main canvas").first).to_be_visible()
        shot(name)
        if name == "requests":
            page.locator("#requests-rows tr[data-request-id] a").first.click()
            expect(page.locator("#page-title")).to_have_text("Call details")
            expect(page.locator("#main .state.loading")).to_have_count(0)
            shot("call-details")
    return problems


async def test_every_page_at_both_widths_in_both_themes(
    browser: BrowserThread,  # noqa: F811 - the fixture
    dashboard: RunningService,  # noqa: F811 - the fixture
) -> None:
    await live_traffic(dashboard)
    problems: list[str] = []
    for width in SIZES:
        for theme in THEMES:
            tab = await browser.tab(dashboard.base_url, width)
            try:
                problems += await browser.run(walk, tab, width, theme)
            finally:
                await browser.run(tab.close)
    assert not problems, "\n".join(problems)
    shots = {f"{name}-{w}-{t}" for name, *_ in PAGES for w in SIZES for t in THEMES}
    assert len(shots) == len(PAGES) * 4
    assert all(re.fullmatch(r"[a-z-]+-\d+-(light|dark)", shot) for shot in shots)
