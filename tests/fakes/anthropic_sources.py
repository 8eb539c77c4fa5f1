"""The sources of the fake Anthropic's image and document blocks, checked as the API checks them:
known media types whose bytes look like them, http(s) URLs, file ids."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .anthropic_blocks import IMAGE_MEDIA_TYPES, Refused

__all__ = ["document_source", "image_source"]

_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


def image_source(source: Any, path: str) -> None:
    """base64 (a known media type whose bytes match it), url (http/https), or file."""
    if not isinstance(source, dict):
        raise Refused(f"{path}: Field required")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise Refused(
                f"{path}.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                "'image/gif' or 'image/webp'"
            )
        raw = _decoded(source.get("data"))
        if not raw:
            raise Refused(f"{path}.base64.data: invalid base64 data")
        if not _looks_like(raw, media_type):
            raise Refused(f"{path}.base64.data: Image does not match the provided media type")
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Refused(f"{path}.url.url: Input should be a valid URL")
    elif kind == "file":
        if not isinstance(source.get("file_id"), str):
            raise Refused(f"{path}.file.file_id: Field required")
    else:
        raise Refused(
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'base64', 'url', 'file'"
        )


def document_source(source: Any, path: str) -> None:
    """A PDF (base64), plain text, content blocks, a URL or a file."""
    if not isinstance(source, dict):
        raise Refused(f"{path}: Field required")
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") != "application/pdf":
            raise Refused(f"{path}.base64.media_type: Input should be 'application/pdf'")
        raw = _decoded(source.get("data"))
        if not raw.startswith(b"%PDF-"):
            raise Refused(f"{path}.base64.data: The PDF specified was not valid.")
    elif kind == "text":
        if source.get("media_type") != "text/plain":
            raise Refused(f"{path}.text.media_type: Input should be 'text/plain'")
        if not isinstance(source.get("data"), str):
            raise Refused(f"{path}.text.data: Field required")
    elif kind == "content":
        content = source.get("content")
        if isinstance(content, list):
            for i, block in enumerate(content):
                inner_kind = block.get("type") if isinstance(block, dict) else None
                if inner_kind not in ("text", "image"):
                    raise Refused(
                        f"{path}.content.content.{i}.type: Input should be 'text' or 'image'"
                    )
                inner = f"{path}.content.content.{i}"
                if inner_kind == "image":
                    image_source(block.get("source"), f"{inner}.image.source")
                elif not isinstance(block.get("text"), str) or not block["text"].strip():
                    raise Refused(f"{inner}.text: text content blocks must be non-empty")
        elif not isinstance(content, str):
            raise Refused(f"{path}.content.content: Field required")
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Refused(f"{path}.url.url: Input should be a valid URL")
    elif kind == "file":
        if not isinstance(source.get("file_id"), str):
            raise Refused(f"{path}.file.file_id: Field required")
    else:
        raise Refused(
            f"{path}: Input tag '{kind}' found using 'type' does not match any of the expected "
            "tags: 'base64', 'text', 'content', 'url', 'file'"
        )


def _looks_like(raw: bytes, media_type: str) -> bool:
    """Whether the image bytes start the way `media_type` files start."""
    if media_type == "image/webp":
        return raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"
    return raw.startswith(_MAGIC[media_type])


def _decoded(data: Any) -> bytes:
    """The bytes of base64 `data`; empty when it is not base64."""
    try:
        return base64.b64decode(data, validate=True) if isinstance(data, str) else b""
    except (binascii.Error, ValueError):
        return b""
