"""Dashboard passwords: argon2id hashes, computed off the trio thread.

A hash costs ~50 ms of CPU and 64 MiB with argon2-cffi's defaults (RFC 9106's second
recommendation), so it runs in a worker thread behind a small limiter: a burst of logins queues
there instead of running a dozen 64 MiB hashes at once. Tests pass a cheap profile; the server never
does.
"""

from __future__ import annotations

import secrets
from typing import Final

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from proxy.usernames import fold_username

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = (
    1024  # argon2 hashes any length; a megabyte "password" is an attack, not a login
)
CONCURRENT_HASHES: Final = 2


class PasswordPolicyError(ValueError):
    """A new password the policy refuses; the message says why."""


class Passwords:
    """Hash and verify passwords in worker threads; one instance per service."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()  # argon2id, 64 MiB, t=3, p=4
        self._limiter = trio.CapacityLimiter(CONCURRENT_HASHES)
        # Verifying against this when the user does not exist costs the same as a real check,
        # so a login's timing does not tell which usernames exist.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def cheap_for_tests(cls) -> Passwords:
        """Fast, weak parameters: for tests only."""
        return cls(argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (in a worker thread)."""
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    def hash_now(self, password: str) -> str:
        """The hash, computed on this thread: for the command line, never on the trio thread."""
        return self._hasher.hash(password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; None (no such user) never matches but
        costs the same time."""
        if len(password) > MAX_LENGTH:
            return False
        candidate = stored_hash if stored_hash is not None else self._dummy
        matched = await trio.to_thread.run_sync(
            self._verify, candidate, password, limiter=self._limiter
        )
        return matched and stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether the hash was made with other parameters than today's (then rehash at login)."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def check_new_password(password: str, *, username: str, current: str | None = None) -> None:
    """Raise PasswordPolicyError when ``password`` may not become ``username``'s password."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"The new password must be at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"The new password must be at most {MAX_LENGTH} characters.")
    if fold_username(password.strip()) == fold_username(username):
        raise PasswordPolicyError("The new password must not be the username.")
    if current is not None and password == current:
        raise PasswordPolicyError("The new password must differ from the current one.")


def generate_password() -> str:
    """A one-time password: 20 URL-safe characters (120 random bits)."""
    return secrets.token_urlsafe(15)
