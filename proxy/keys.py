"""Client API keys: generation, the stored digest and the masked display form (pure, no I/O)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

__all__ = [
    "KEY_BYTES",
    "KEY_PREFIX",
    "PREFIX_LENGTH",
    "NewKey",
    "generate_key",
    "key_digest",
    "mask_key",
]

KEY_PREFIX = "sk-"
KEY_BYTES = 32
"""Random bytes in a key: 256 bits, so a SHA-256 look-up needs no salt or slow hash."""
PREFIX_LENGTH = len(KEY_PREFIX) + 4
"""Characters kept for display: the scheme prefix plus four random ones."""
_LAST_LENGTH = 4


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key; only ``sha256``, ``prefix`` and ``last4`` are ever stored."""

    # Left out of repr so that logging the object cannot leak the key.
    plain: str = field(repr=False)
    sha256: str
    prefix: str
    last4: str

    def masked(self) -> str:
        """The display form, e.g. ``sk-AbCd…wxyz``."""
        return mask_key(self.prefix, self.last4)


def generate_key() -> NewKey:
    """A new random key: ``sk-`` followed by 32 random bytes in URL-safe base64 (43 characters)."""
    plain = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return NewKey(
        plain=plain,
        sha256=key_digest(plain),
        prefix=plain[:PREFIX_LENGTH],
        last4=plain[-_LAST_LENGTH:],
    )


def key_digest(key: str) -> str:
    """The stored form of an API key: the hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(key.encode()).hexdigest()


def mask_key(prefix: str, last4: str) -> str:
    """A key shown as its first seven and last four characters: ``sk-AbCd…wxyz``."""
    return f"{prefix}…{last4}"
