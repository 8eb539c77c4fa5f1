"""Inline remote images for providers that need the bytes (Gemini, Ollama).

The fetching itself, with its address checks, lives in :mod:`proxy.image_fetch`; this module
checks a request's image parts, fetches the remote ones and rewrites the request with data URLs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import trio

from proxy.chat import ChatRequest
from proxy.chat_form import ImagePart
from proxy.data_url import parse_data_url
from proxy.errors import GatewayError, InvalidRequest
from proxy.image_addresses import AddressCheck, IPAddress, Resolver, forbidden_reason, resolve_host
from proxy.image_budget import ImageLease
from proxy.image_fetch import IMAGE_MIME, ImageError, ImageFetcher, ImagePolicy

__all__ = [
    "AddressCheck",
    "IPAddress",
    "ImageError",
    "ImageFetcher",
    "ImageLease",
    "ImagePolicy",
    "Resolver",
    "forbidden_reason",
    "inline_remote_images",
    "parse_image_data_url",
    "resolve_host",
]

# ---------------------------------------------------------------------------------------------
# Data URLs


def parse_image_data_url(url: str) -> tuple[str, str]:
    """The MIME type and base64 text of an image data URL; ValueError when it is not one."""
    parsed = parse_data_url(url)
    if not IMAGE_MIME.fullmatch(parsed.media_type):
        shown = parsed.media_type or "none"
        raise ValueError(f"a data URL must have an image/* type, not {shown!r}")
    if not parsed.is_base64:
        raise ValueError("a data URL must be base64-encoded (';base64,')")
    if not parsed.payload:
        raise ValueError("the data URL is empty")
    try:
        binascii.a2b_base64(parsed.payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data URL's base64 does not decode") from None
    return parsed.media_type, parsed.payload


def _decoded_size(data: str) -> int:
    """Bytes a valid base64 text decodes to, without decoding it."""
    return len(data) // 4 * 3 - data[-2:].count("=")


# ---------------------------------------------------------------------------------------------
# Requests

Position = tuple[int, int]  # (message index, content part index)


def _part_error(position: Position, reason: str) -> InvalidRequest:
    """The client-facing error for one unusable image part."""
    param = f"messages[{position[0]}].content[{position[1]}].image_url"
    return InvalidRequest(
        f"Image at {param} could not be used: {reason}", param=param, code="invalid_image_url"
    )


def _scheme(url: str) -> str:
    """The lower-cased scheme of ``url``, "" when it has none."""
    head, sep, _ = url.partition(":")
    return head.strip().lower() if sep else ""


def _image_parts(request: ChatRequest) -> list[tuple[Position, str]]:
    """Every image part's position and URL, in order (of the internal form: only a translated
    call has its images inlined, and a part it cannot read is a 400 naming it)."""
    found: list[tuple[Position, str]] = []
    for i, message in enumerate(request.form().messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    found.append(((i, j), part.image_url.url))
    return found


def _remote_urls(request: ChatRequest, policy: ImagePolicy) -> dict[str, list[Position]]:
    """The http(s) image URLs by where they are used; data URLs and schemes checked here."""
    remote: dict[str, list[Position]] = {}
    for position, url in _image_parts(request):
        scheme = _scheme(url)
        if scheme == "data":
            try:
                _mime, data = parse_image_data_url(url)
            except ValueError as exc:
                raise _part_error(position, str(exc)) from None
            size = _decoded_size(data)
            if size > policy.max_bytes:
                raise _part_error(
                    position, f"too large: {size} bytes, the limit is {policy.max_bytes}"
                )
        elif scheme in ("http", "https"):
            remote.setdefault(url, []).append(position)
        else:
            shown = repr(scheme) if scheme else "none"
            raise _part_error(position, f"unsupported URL scheme {shown} (use http, https or data)")
    return remote


async def inline_remote_images(
    request: ChatRequest, fetcher: ImageFetcher, lease: ImageLease | None = None
) -> ChatRequest:
    """Replace every http(s) image URL by a data URL of the fetched image.

    An unusable image is an InvalidRequest naming its part; no room for it in the image budget
    is a 429 or 503 (:mod:`proxy.image_budget`). The images' memory stays reserved on ``lease``
    until its holder releases it, once the upstream has the request; without a lease (a one-off
    use) it is released on return.
    """
    if not request.has_images:
        return request
    policy = fetcher.policy
    remote = _remote_urls(request, policy)
    if not remote:
        return request
    if lease is None:
        with fetcher.lease("") as own:
            return await inline_remote_images(request, fetcher, own)
    inlined: dict[str, str] = {}
    failures: list[tuple[str, ImageError | GatewayError]] = []
    limiter = trio.CapacityLimiter(policy.max_concurrent)
    total = 0

    async def fetch_one(url: str, cancel_scope: trio.CancelScope) -> None:
        nonlocal total
        try:
            async with limiter:
                mime, data = await fetcher.fetch(url, lease)
            total += len(data)
            if total > policy.max_total_bytes:
                raise ImageError(
                    f"the request's images together exceed {policy.max_total_bytes} bytes"
                )
        except (ImageError, GatewayError) as exc:
            failures.append((url, exc))
            cancel_scope.cancel()  # one bad image fails the request: stop the other fetches
            return
        inlined[url] = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    async with trio.open_nursery() as nursery:
        for url in remote:
            nursery.start_soon(fetch_one, url, nursery.cancel_scope)
    if failures:
        url, error = failures[0]
        if isinstance(error, GatewayError):
            raise error  # the gateway is busy (429, 503), not the image broken
        raise _part_error(remote[url][0], str(error))
    return _with_urls(
        request, [(position, inlined[url]) for url, used in remote.items() for position in used]
    )


def _with_urls(request: ChatRequest, replacements: Sequence[tuple[Position, str]]) -> ChatRequest:
    """A copy of ``request`` with these image URLs replaced in its body."""
    raw = dict(request.raw)
    raw_messages: list[Any] = list(raw["messages"])
    raw["messages"] = raw_messages
    for (i, j), url in replacements:
        raw_message = dict(raw_messages[i])
        raw_content: list[Any] = list(raw_message["content"])
        raw_message["content"] = raw_content
        raw_messages[i] = raw_message
        raw_part = dict(raw_content[j])
        raw_part["image_url"] = {**raw_part["image_url"], "url": url}
        raw_content[j] = raw_part
    return request.with_raw(raw)
