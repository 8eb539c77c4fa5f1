"""Client API keys: format, entropy, digest and the masked display form."""

from __future__ import annotations

import base64
import hashlib
import re

from proxy.keys import KEY_PREFIX, NewKey, generate_key, key_digest, mask_key

URL_SAFE_KEY = re.compile(r"sk-[A-Za-z0-9_-]+")


def test_key_format() -> None:
    key = generate_key()
    assert key.plain.startswith(KEY_PREFIX)
    assert KEY_PREFIX == "sk-"
    assert URL_SAFE_KEY.fullmatch(key.plain)
    body = key.plain[len(KEY_PREFIX) :]
    # Unpadded URL-safe base64 of 32 bytes is 43 characters.
    assert len(body) == 43
    assert len(base64.urlsafe_b64decode(body + "=")) >= 32


def test_stored_parts_are_digest_prefix_and_last_four() -> None:
    key = generate_key()
    assert key.sha256 == hashlib.sha256(key.plain.encode("utf-8")).hexdigest()
    assert len(key.sha256) == 64
    assert key.prefix == key.plain[:7]
    assert key.prefix.startswith("sk-")
    assert key.last4 == key.plain[-4:]


def test_masking() -> None:
    assert mask_key("sk-AbCd", "wxyz") == "sk-AbCd…wxyz"
    key = generate_key()
    assert key.masked() == f"{key.plain[:7]}…{key.plain[-4:]}"
    assert key.plain not in key.masked()


def test_repr_does_not_leak_the_plain_key() -> None:
    key = generate_key()
    assert key.plain not in repr(key)
    assert key.plain not in str(key)
    assert key.sha256 in repr(key)


def test_digest() -> None:
    assert key_digest("sk-abc") == hashlib.sha256(b"sk-abc").hexdigest()
    assert key_digest("sk-é") == hashlib.sha256("sk-é".encode()).hexdigest()
    assert key_digest("sk-abc") != key_digest("sk-abd")


def test_no_two_keys_are_equal() -> None:
    keys: list[NewKey] = [generate_key() for _ in range(2000)]
    assert len({key.plain for key in keys}) == len(keys)
    assert len({key.sha256 for key in keys}) == len(keys)
    # The displayed characters are random too, not a constant per process.
    assert len({key.prefix for key in keys}) > 1
    assert len({key.last4 for key in keys}) > 1
