"""The dashboard UI: static files served by the gateway at ``/`` (design §8), under a strict CSP.

No build step and no CDN: vanilla JS modules and CSS in ``web/static``, Chart.js vendored from its
npm package. The page itself holds no inline script or style, so the Content-Security-Policy can
forbid both: an injected ``<script>`` would not run even if some text slipped through as markup.
"""

from __future__ import annotations

import errno
import mimetypes
import unicodedata
from pathlib import Path
from typing import Final

import trio
from quart import Blueprint, Response, abort

ui = Blueprint("ui", __name__)

STATIC: Final = Path(__file__).parent / "static"
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


# What reading a name that is no file of ours can raise: absent, a directory, a loop, too long.
_NO_SUCH_FILE: Final = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG}
)


def _load(relative: str) -> tuple[Path, bytes] | None:
    """The file under ``web/static`` that ``relative`` names and its bytes, or None when it
    names none (run in a worker thread: resolving and reading touch the disk).

    A URL can carry a NUL (``%00``), which no file name holds and which made ``resolve()`` raise
    ValueError (a 500), or a lone surrogate from undecodable bytes, which cannot be encoded to a
    file name: both are simply not found.
    """
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in relative):
        return None
    root = STATIC.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        return None
    try:
        return path, path.read_bytes()
    except OSError as exc:
        if exc.errno in _NO_SUCH_FILE:
            return None
        raise


async def _file(relative: str, *, cache: str) -> Response:
    found = await trio.to_thread.run_sync(_load, relative)
    if found is None:
        abort(404)
    path, data = found
    kind = (
        _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    if kind.startswith("text/") or kind.endswith(("javascript", "json")):
        kind += "; charset=utf-8"
    response = Response(data, content_type=kind)
    response.headers["cache-control"] = cache
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


@ui.get("/")
async def index() -> Response:
    # The page changes with every release: never served stale.
    return await _file("index.html", cache="no-cache")


@ui.get("/static/<path:relative>")
async def static(relative: str) -> Response:
    return await _file(relative, cache="no-cache")
