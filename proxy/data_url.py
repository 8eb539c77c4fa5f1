"""``data:`` URLs (RFC 2397): how chat parts carry inline bytes, for every module reading them."""

from __future__ import annotations

import base64
import dataclasses
from urllib.parse import unquote_to_bytes


@dataclasses.dataclass(frozen=True, slots=True)
class DataURL:
    """A parsed data URL: its media type (lower-cased, may be empty) and its payload."""

    media_type: str
    is_base64: bool
    payload: str

    def base64_payload(self) -> str:
        """The bytes as base64 text, re-encoding a percent-encoded payload (an SVG, say)."""
        if self.is_base64:
            return self.payload
        return base64.b64encode(unquote_to_bytes(self.payload)).decode("ascii")


def is_data_url(url: str) -> bool:
    """Whether ``url`` is a ``data:`` URL (of any type, valid or not)."""
    return url[:5].lower() == "data:"


def parse_data_url(url: str) -> DataURL:
    """Split a data URL; ValueError when it is not one or has no ``,`` before its data."""
    if not is_data_url(url):
        raise ValueError("not a data URL")
    # Split in place: ``url[5:].partition(",")`` would first copy the whole URL (an inline
    # image can be megabytes) only to copy its payload again.
    comma = url.find(",", 5)
    if comma < 0:
        raise ValueError("a data URL needs a comma before its data")
    header, payload = url[5:comma], url[comma + 1 :]
    params = [param.strip().lower() for param in header.split(";")]
    is_base64 = len(params) > 1 and params[-1] == "base64"
    return DataURL(params[0], is_base64, payload)
