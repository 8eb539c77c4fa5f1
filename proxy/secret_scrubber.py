"""Takes every configured secret out of text an upstream produced, before anyone sees it.

An upstream error body may echo the request it got (a debugging proxy in front of Ollama, a
misconfigured compatible server), ``Authorization: Bearer <key>`` included. Its text reaches the
API client, the log, ``llm_requests`` and the dashboard, so the provider actor passes every
:class:`GatewayError` leaving an upstream call through :meth:`SecretScrubber.scrub_error`.

What is caught: every provider key (all providers, not only the one called) and every static
``[auth] tokens`` entry, as is, percent-encoded (``quote`` with and without ``/`` kept,
``quote_plus``, either hex case) and JSON-escaped (``\\/`` for ``/``, ``\\"`` and ``\\\\``),
matched case-insensitively. Not caught: base64 (``Basic`` auth of a key, a key inside a JWT) and
keys split or truncated by the upstream; OpenAI itself masks a wrong key as ``sk-…abcd``.

Secrets shorter than :data:`MIN_SECRET_LENGTH` are left alone: a four-letter key is a common
word, and redacting it would turn every message into noise. No real provider key is that short
(OpenAI's, Gemini's, DeepSeek's and xAI's are 32 or more), and the gateway warns at start about
any configured secret below the line.

Keys come from the file, the environment or systemd credentials only, never the dashboard, so the
scrubber is built once at start and never needs rebuilding.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote, quote_plus

from proxy.config import Config
from proxy.errors import GatewayError

MIN_SECRET_LENGTH: Final = 8
REDACTED: Final = "[redacted]"


def _forms(secret: str) -> set[str]:
    """The ways an upstream may echo ``secret``; hex case is handled by matching without case."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
    }


class SecretScrubber:
    """Replaces configured secrets in any of their covered forms with ``[redacted]``."""

    __slots__ = ("_pattern", "ignored")

    def __init__(self, secrets: Iterable[str]) -> None:
        given = set(secrets)
        kept = {s for s in given if len(s) >= MIN_SECRET_LENGTH}
        self.ignored = len(given - kept)
        forms = {form for secret in kept for form in _forms(secret)}
        # Longest first, so a secret that contains another is taken whole.
        alternatives = sorted(forms, key=lambda form: (-len(form), form))
        self._pattern = (
            re.compile("|".join(map(re.escape, alternatives)), re.IGNORECASE)
            if alternatives
            else None
        )

    @classmethod
    def from_config(cls, config: Config) -> SecretScrubber:
        """A scrubber for every provider key and static API key in ``config``."""
        return cls(configured_secrets(config).values())

    def scrub(self, text: str) -> str:
        """``text`` with every covered form of every secret replaced."""
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)

    def scrub_error(self, error: GatewayError) -> None:
        """Scrub an error in place: its message, param, code and headers (what is sent on)."""
        if self._pattern is None:
            return
        message = self.scrub(error.message)
        if message != error.message:
            error.message = message
            error.args = (message,)
        if error.param is not None:
            error.param = self.scrub(error.param)
        if error.code is not None:
            error.code = self.scrub(error.code)
        for name, value in error.headers.items():
            error.headers[name] = self.scrub(value)


def configured_secrets(config: Config) -> dict[str, str]:
    """Every secret of the config by where it is set (a label safe to log), static keys first."""
    secrets = {f"auth.tokens[{i}]": token for i, token in enumerate(config.auth.tokens)}
    for name, provider in config.providers.items():
        if provider.api_key:
            secrets[f"providers.{name} api key"] = provider.api_key
    return secrets
