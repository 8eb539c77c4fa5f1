"""API-key authentication for ``/v1`` (design §3 step 2).

Keys are compared by SHA-256 digest, so a look-up is one dict probe that takes the same time
whatever the key, and the plain key is not kept around in a comparable form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from proxy.config import mask_secret
from proxy.errors import AuthenticationFailed

STATIC_CLIENT = "static"


def key_digest(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_key(authorization: bytes | None, api_key: bytes | None) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key``."""
    if authorization:
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if api_key:
        return api_key.decode("latin-1").strip() or None
    return None


class Authenticator:
    """Maps a presented key to a client id; ``None`` means an anonymous caller."""

    def __init__(self, static_keys: Iterable[str], *, allow_anonymous: bool) -> None:
        self._static = {key_digest(key): STATIC_CLIENT for key in static_keys}
        self.allow_anonymous = allow_anonymous

    def authenticate(self, key: str | None) -> str | None:
        """The client id for ``key``; raises 401 for a missing or unknown key."""
        if key is None:
            if self.allow_anonymous:
                return None
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        client = self._static.get(key_digest(key))
        if client is None:
            raise AuthenticationFailed(f"Incorrect API key provided: {mask_secret(key)}.")
        return client
