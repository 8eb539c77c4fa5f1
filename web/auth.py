"""API-key authentication for ``/v1`` (design §3 step 2): who is calling, and under which limits.

Keys are compared by SHA-256 digest, so a look-up is one dict probe that takes the same time
whatever the key, and no plain key is kept around in a comparable form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from actors.client_directory import ClientDirectory
from actors.rate_limiter import ClientLimits
from proxy.config import mask_secret
from proxy.errors import AuthenticationFailed
from proxy.keys import key_digest
from web.asgi import Scope, header

STATIC_CLIENT = "static"
ANONYMOUS = "anonymous"  # the rate-limit bucket shared by callers without a key


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: its client id (None when anonymous) and its limits."""

    client_id: str | None
    limits: ClientLimits
    token_id: int | None = None

    @property
    def bucket(self) -> str:
        """The rate-limit bucket of this caller."""
        return self.client_id if self.client_id is not None else ANONYMOUS


def bearer_key(authorization: bytes | None, api_key: bytes | None) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key``."""
    if authorization:
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    if api_key:
        return api_key.decode("latin-1").strip() or None
    return None


def request_key(scope: Scope) -> str | None:
    """The API key a request presents, if any."""
    return bearer_key(header(scope, b"authorization"), header(scope, b"x-api-key"))


class Authenticator:
    """Maps a presented key to a :class:`Caller`: static config keys, then client keys."""

    def __init__(
        self,
        static_keys: Iterable[str],
        *,
        allow_anonymous: bool,
        default_limits: ClientLimits,
        directory: ClientDirectory | None = None,
        demo_mode: bool = False,
    ) -> None:
        self._static = {key_digest(key) for key in static_keys}
        self._allow_anonymous = allow_anonymous
        self._demo_mode = demo_mode
        self._default = default_limits
        self._directory = directory

    @property
    def allow_anonymous(self) -> bool:
        """Whether a call without a key is let through now."""
        if self._allow_anonymous:
            return True
        # Demo mode lasts until the first client key exists.
        return self._demo_mode and (self._directory is None or self._directory.key_count == 0)

    def authenticate(self, key: str | None) -> Caller:
        """The caller presenting ``key``; raises 401 for a missing, unknown or revoked key."""
        if key is None:
            if self.allow_anonymous:
                return Caller(None, self._default)
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'."
            )
        digest = key_digest(key)
        if digest in self._static:
            return Caller(STATIC_CLIENT, self._default)
        if self._directory is not None:
            known = self._directory.lookup(digest)
            if known is not None:
                self._directory.key_used(known.token_id)
                return Caller(known.client_id, known.limits, known.token_id)
        # Revoked keys and keys of inactive clients are not in the table: one answer for all.
        raise AuthenticationFailed(f"Incorrect API key provided: {mask_secret(key)}.")
