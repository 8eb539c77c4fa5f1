"""Drive Debian's Chromium with Playwright from trio tests.

Playwright's sync API cannot run on the trio thread (it runs its own event loop), and its objects
belong to the thread that made them. So one thread owns Playwright and the browser for a whole
test module; tests hand it functions to run (``await browser.run(fn, ...)``) while the gateway
keeps serving on the trio loop. A ``Tab`` (context and page) made in that thread is then used only
through ``browser.run``.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture as a failure, not a skip
    sync_playwright = None  # type: ignore[assignment]

T = TypeVar("T")

ARTIFACTS = Path(__file__).parent / "artifacts"
WIDE = 1400
PHONE = 390
# Auto-waiting assertions wait up to this long: generous, so a slow machine only makes them slower.
TIMEOUT_MS = 20_000


def chromium_path() -> str:
    """Debian's Chromium, or a failure that says how to get it (the tests never skip)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            "Chromium is not installed: the dashboard tests drive Debian's chromium package. "
            "Run `make test` (it installs it) or `apt-get install -y chromium`."
        )
    return path


class BrowserThread:
    """A thread that owns Playwright and one headless Chromium, and runs functions for tests."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name="chromium", daemon=True)
        self.browser: Browser | None = None

    def start(self) -> BrowserThread:
        if sync_playwright is None:
            raise RuntimeError(
                "Playwright is not installed: `.venv/bin/pip install -e '.[dev]'` (or `make test`)."
            )
        executable = chromium_path()
        self._executable = executable
        self._thread.start()
        self._ready.result(timeout=120)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=60)

    def _main(self) -> None:
        try:
            with sync_playwright() as playwright:
                self.browser = playwright.chromium.launch(
                    executable_path=self._executable, headless=True
                )
                expect.set_options(timeout=TIMEOUT_MS)
                self._ready.set_result(None)
                while (job := self._jobs.get()) is not None:
                    fn, args, result = job
                    if not result.set_running_or_notify_cancel():
                        continue
                    try:
                        result.set_result(fn(*args))
                    except BaseException as error:
                        result.set_exception(error)
                self.browser.close()
        except BaseException as error:
            if not self._ready.done():
                self._ready.set_exception(error)
            raise

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the browser thread and wait for it (from any other thread)."""
        if not self._thread.is_alive():
            raise RuntimeError("the browser thread is not running")
        result: Future[T] = Future()
        self._jobs.put((fn, args, result))
        return result.result()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the browser thread; the trio loop keeps running meanwhile."""
        return await trio.to_thread.run_sync(self.call, fn, *args)

    async def tab(self, base_url: str, width: int = WIDE, **options: Any) -> Tab:
        return await self.run(self._new_tab, base_url, width, options)

    def _new_tab(self, base_url: str, width: int, options: dict[str, Any]) -> Tab:
        assert self.browser is not None
        context = self.browser.new_context(
            base_url=base_url, viewport={"width": width, "height": 900}, **options
        )
        context.set_default_timeout(TIMEOUT_MS)
        return Tab(context, context.new_page(), base_url)


# "Failed to load resource" console errors that are the app working as designed: before signing
# in, the page asks /api/auth/status and gets 401 (which sends it to the login form).
EXPECTED_HTTP_ERRORS: tuple[tuple[str, int], ...] = (("/api/auth/status", 401),)


@dataclass
class Tab:
    """A browser context with one page, recording every console error and uncaught exception."""

    context: BrowserContext
    page: Page
    base_url: str
    errors: list[str] = field(default_factory=list)
    allowed: list[tuple[str, int]] = field(default_factory=lambda: list(EXPECTED_HTTP_ERRORS))

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        text = message.text
        status = re.search(r"status of (\d{3})", text)
        if text.startswith("Failed to load resource") and status:
            path = url.removeprefix(self.base_url).split("?")[0]
            if (path, int(status.group(1))) in self.allowed:
                return
        self.errors.append(f"console error: {text} (at {url or 'unknown location'})")

    def check_errors(self) -> None:
        """No console error (CSP violations are console errors) and no uncaught exception."""
        errors, self.errors[:] = list(self.errors), []
        assert not errors, "the page logged errors:\n" + "\n".join(errors)

    def close(self) -> None:
        self.context.close()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def overflow(self) -> str | None:
        """Why the page scrolls sideways (the widest offenders), or None when it does not."""
        return self.page.evaluate(
            """() => {
              const width = window.innerWidth;
              if (document.documentElement.scrollWidth <= width) return null;
              const wide = [...document.querySelectorAll("body *")]
                .map((el) => [el, el.getBoundingClientRect().right])
                .filter(([, right]) => right > width + 0.5)
                .slice(0, 8)
                .map(([el, right]) => {
                  const cls = el.className && typeof el.className === "string"
                    ? "." + el.className.trim().split(/\\s+/).join(".") : "";
                  return `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${cls}`
                    + ` reaches ${Math.round(right)}px`;
                });
              return `scrollWidth ${document.documentElement.scrollWidth} > innerWidth ${width}: `
                + wide.join(", ");
            }"""
        )

    # -- flows ---------------------------------------------------------------------------------

    def sign_in(
        self, username: str, password: str, *, start: str = "/", lands: str | None = "Overview"
    ) -> None:
        """Sign in through the form (the page at ``start`` sends a signed-out user there), then
        wait for the page it ``lands`` on: moving on earlier would race the router."""
        page = self.page
        page.goto(start)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
        if lands:
            self.settled(lands)

    def open(self, path: str, title: str) -> None:
        """Go to ``#/path`` and wait until the page has rendered (its document title is set)."""
        self.page.goto(f"/#/{path}")
        self.settled(title)

    def settled(self, title: str) -> None:
        """The page ``title`` rendered, with its panels loaded: no loading or error state left."""
        page = self.page
        expect(page).to_have_title(re.compile(rf"^{re.escape(title)} · llm-proxy$"))
        expect(page.locator("#page-title")).to_be_visible()
        expect(page.locator("#main .state.loading")).to_have_count(0)
        errors = page.locator("#main .state.error")
        if errors.count():
            raise AssertionError(
                f"{title}: the page shows an error state: {errors.all_text_contents()}"
            )
