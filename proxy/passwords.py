"""Dashboard passwords: argon2id hashes, computed off the trio thread.

A hash costs ~50 ms of CPU and 64 MiB with argon2-cffi's defaults (RFC 9106's second
recommendation), so it runs in a worker thread behind a small limiter: a burst of logins queues
there instead of running a dozen 64 MiB hashes at once. Sign-ins are bounded too
(:meth:`Passwords.sign_in_slot`): past a few in hand, a flood of guesses is refused at once instead
of making a real sign-in wait behind it; the last places, and one of the two workers, are kept for
sign-ins from an address the user has signed in from before. Tests pass a cheap profile; the
server never does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator
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
# Sign-ins checked at once (running or waiting for a worker) before the next is refused (503)
# instead of queued: with ~50 ms a hash, a sign-in then waits ~150 ms at most, however long the
# flood. Beyond them, places that only sign-ins from an address known for the user may take.
SIGN_IN_SLOTS: Final = CONCURRENT_HASHES + 4
RESERVED_SLOTS: Final = 2
# Sign-ins from an address not known for the user use at most this many of the workers, so a
# flood of guesses from everywhere leaves a worker free for a user at a known address.
GUEST_HASHES: Final = 1


class PasswordsBusy(Exception):
    """Every place for a sign-in is taken: refuse it now rather than queue it."""


@dataclasses.dataclass(frozen=True, slots=True)
class PasswordStatistics:
    """Hashing work since start, and now."""

    verifies: int
    hashes: int
    pending: int
    """Hashes and verifies running or waiting for a worker thread."""
    signing_in: int
    """Sign-ins holding a place (:meth:`Passwords.sign_in_slot`)."""
    busy_refusals: int


class PasswordPolicyError(ValueError):
    """A new password the policy refuses; the message says why."""


class Passwords:
    """Hash and verify passwords in worker threads; one instance per service."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()  # argon2id, 64 MiB, t=3, p=4
        self._limiter = trio.CapacityLimiter(CONCURRENT_HASHES)
        self._guests = trio.CapacityLimiter(GUEST_HASHES)
        self._pending = 0
        self._verifies = 0
        self._hashes = 0
        self._signing_in = 0
        self._busy_refusals = 0
        # Verifying against this when the user does not exist costs the same as a real check,
        # so a login's timing does not tell which usernames exist.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def cheap_for_tests(cls) -> Passwords:
        """Fast, weak parameters: for tests only."""
        return cls(argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    @contextlib.contextmanager
    def sign_in_slot(self, *, known_address: bool) -> Iterator[None]:
        """Hold one of the bounded places for a sign-in's look-up and verify, for the block;
        PasswordsBusy (at once, nothing held) when none is left for it."""
        places = SIGN_IN_SLOTS + (RESERVED_SLOTS if known_address else 0)
        if self._signing_in >= places:
            self._busy_refusals += 1
            raise PasswordsBusy
        self._signing_in += 1
        try:
            yield
        finally:
            self._signing_in -= 1

    def statistics(self) -> PasswordStatistics:
        """Counters since start, and the work in hand."""
        return PasswordStatistics(
            verifies=self._verifies,
            hashes=self._hashes,
            pending=self._pending,
            signing_in=self._signing_in,
            busy_refusals=self._busy_refusals,
        )

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (in a worker thread)."""
        self._pending += 1
        try:
            self._hashes += 1
            return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)
        finally:
            self._pending -= 1

    def hash_now(self, password: str) -> str:
        """The hash, computed on this thread: for the command line, never on the trio thread."""
        return self._hasher.hash(password)

    async def verify(self, stored_hash: str | None, password: str, *, guest: bool = False) -> bool:
        """Whether ``password`` matches ``stored_hash``; None (no such user) never matches but
        costs the same time. ``guest``: a sign-in from an address not known for the user, which
        waits for the guests' share of the workers."""
        if len(password) > MAX_LENGTH:
            return False
        candidate = stored_hash if stored_hash is not None else self._dummy
        self._pending += 1
        try:
            self._verifies += 1
            if guest:
                async with self._guests:
                    matched = await self._verify_in_thread(candidate, password)
            else:
                matched = await self._verify_in_thread(candidate, password)
        finally:
            self._pending -= 1
        return matched and stored_hash is not None

    async def _verify_in_thread(self, stored_hash: str, password: str) -> bool:
        return await trio.to_thread.run_sync(
            self._verify, stored_hash, password, limiter=self._limiter
        )

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
