"""The dashboard's files: served with a strict CSP, nothing outside web/static, no inline code."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import StartGateway
from web.ui import CSP, STATIC


async def test_the_page_and_its_files_carry_a_strict_policy(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self';" in CSP
        assert "unsafe-inline" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        script = await client.get("/static/js/app.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/static/style.css")).status_code == 200
        for probe in (
            "/static/../proxy/cli.py",
            "/static/%2e%2e/proxy/cli.py",
            "/static/no-such-file.js",
            "/static/js",
        ):
            assert (await client.get(probe)).status_code == 404, probe


async def test_paths_no_file_can_have_are_404_and_log_nothing(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway()
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        for probe in (
            "/static/js/%00",
            "/static/js/app.js%00.png",
            "/static/%ff%fe",
            "/static/js/%ed%a0%80.js",
            "/static/" + "x" * 5000,
        ):
            answer = await client.get(probe)
            assert answer.status_code == 404, (probe, answer.status_code)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_no_dashboard_when_it_is_disabled(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"dashboard": {"enabled": False}})
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.post("/api/auth/login", json={})).status_code == 404


def test_no_inline_script_style_or_inner_html_in_the_sources() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert " style=" not in html
    assert not re.search(r"\bon[a-z]+=", html), "inline event handler"
    ours = [p for p in STATIC.rglob("*.js") if "vendor" not in p.parts]
    assert ours
    for source in ours:
        text = source.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{banned} in {source.relative_to(Path(STATIC))}"
