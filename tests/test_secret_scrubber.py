"""The scrubber that takes configured secrets out of upstream-derived text (issue 13, item 4)."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest

from proxy.config import parse_config
from proxy.errors import InvalidRequest, RateLimited, RequestTimeout, UpstreamError
from proxy.secret_scrubber import (
    MIN_SECRET_LENGTH,
    REDACTED,
    SecretScrubber,
    configured_secrets,
)

KEY = "sk-proj-Ab/cd+ef=0123456789"
OTHER = "AIzaSy-gemini_key-9876543210"


def encodings(secret: str) -> list[str]:
    return [
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
        secret.replace("/", "\\/"),
        json.dumps(secret)[1:-1],
    ]


@pytest.mark.parametrize("form", encodings(KEY))
def test_every_covered_encoding_of_a_secret_is_redacted(form: str) -> None:
    scrubber = SecretScrubber([KEY, OTHER])
    text = f"upstream said: Authorization: Bearer {form}; try again"
    assert scrubber.scrub(text) == f"upstream said: Authorization: Bearer {REDACTED}; try again"


def test_several_secrets_in_one_text_and_text_without_any() -> None:
    scrubber = SecretScrubber([KEY, OTHER])
    assert scrubber.scrub(f"{OTHER}+{KEY}{KEY}") == f"{REDACTED}+{REDACTED}{REDACTED}"
    assert scrubber.scrub("nothing secret here") == "nothing secret here"
    assert SecretScrubber([]).scrub(f"{KEY}") == KEY


def test_a_secret_inside_a_longer_one_does_not_leave_the_rest_behind() -> None:
    longer = KEY + "-extended-suffix"
    scrubber = SecretScrubber([KEY, longer])
    assert scrubber.scrub(f"a {longer} b") == f"a {REDACTED} b"


def test_secrets_shorter_than_the_minimum_are_not_scrubbed() -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    scrubber = SecretScrubber([short, "y" * MIN_SECRET_LENGTH])
    assert scrubber.scrub(f"{short} {'y' * MIN_SECRET_LENGTH}") == f"{short} {REDACTED}"
    assert scrubber.ignored == 1


def test_an_error_is_scrubbed_in_place_message_param_code_and_headers() -> None:
    scrubber = SecretScrubber([KEY])
    error = InvalidRequest(f"bad key {KEY}", param=KEY, code=f"code_{quote_plus(KEY)}")
    scrubber.scrub_error(error)
    assert error.message == f"bad key {REDACTED}"
    assert error.args == (error.message,)
    assert (error.param, error.code) == (REDACTED, f"code_{REDACTED}")
    assert KEY not in error.to_body().decode()
    limited = RateLimited("slow down", headers={"retry-after": KEY})
    scrubber.scrub_error(limited)
    assert limited.headers == {"retry-after": REDACTED}
    # Errors whose constructor takes only a message are changed in place just the same.
    timeout = RequestTimeout(f"late {KEY}")
    scrubber.scrub_error(timeout)
    assert timeout.message == f"late {REDACTED}"


def test_a_clean_error_is_left_exactly_as_it_was() -> None:
    error = UpstreamError("Upstream openai error (500): boom", code="server_error")
    SecretScrubber([KEY]).scrub_error(error)
    assert (error.message, error.code, error.param) == (
        "Upstream openai error (500): boom",
        "server_error",
        None,
    )


def test_the_config_names_every_provider_key_and_static_token() -> None:
    config = parse_config(
        {
            "auth": {"tokens": ["static-token-0123456789", "tiny"]},
            "providers": {
                "openai": {"api_key": KEY},
                "gemini": {"api_key": OTHER, "enabled": False},
                "ollama": {"api_key": "ollama-proxy-key-0123"},
            },
        },
        source="test",
        environ={"DEEPSEEK_API_KEY": "sk-deepseek-from-env-0123"},
    )
    secrets = configured_secrets(config)
    assert secrets == {
        "auth.tokens[0]": "static-token-0123456789",
        "auth.tokens[1]": "tiny",
        "providers.openai api key": KEY,
        "providers.gemini api key": OTHER,
        "providers.deepseek api key": "sk-deepseek-from-env-0123",
        "providers.ollama api key": "ollama-proxy-key-0123",
    }
    scrubber = SecretScrubber.from_config(config)
    assert scrubber.scrub(f"{OTHER} sk-deepseek-from-env-0123") == f"{REDACTED} {REDACTED}"
    assert scrubber.ignored == 1
