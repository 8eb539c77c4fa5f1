"""SessionStore: dashboard sessions in memory, with expiry, sliding refresh and revocation.

A session is a 256-bit random token handed to the browser (cookie) or a script (Bearer). Only its
SHA-256 is kept, so a memory dump holds no usable token. Sessions expire ``ttl`` after their last
refresh; a session used past half its life is extended (sliding refresh), so an active admin is
not logged out mid-task while an idle one is.

Users change outside this process too (``llm-proxy users reset-password`` from the CLI, another
admin's edit): every few seconds the store re-reads the users table and ends the sessions of a user
who is gone or whose password changed, and picks up role and must-change-password changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Protocol

import trio

from proxy.usernames import fold_username

log = logging.getLogger("llm_proxy.sessions")

SWEEP_EVERY_S: Final = 60.0
USERS_REFRESH_S: Final = 2.0
MAX_SESSIONS: Final = 10_000
MAX_SESSIONS_PER_USER: Final = 50


@dataclasses.dataclass(frozen=True, slots=True)
class UserState:
    """What a session needs to know of its user, as stored."""

    role: str
    must_change_password: bool
    password_hash: str


@dataclasses.dataclass(slots=True)
class Session:
    """One signed-in user."""

    username: str
    role: str
    must_change_password: bool
    created_at: float  # wall clock, seconds
    expires_at: float
    key: str  # SHA-256 of the token: identifies the session without being it
    password_digest: str  # of the hash the user had when signing in

    @property
    def is_admin(self) -> bool:
        """Whether the session may change things."""
        return self.role == "admin"


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStatistics:
    """Counters for health and metrics."""

    active: int
    created: int
    expired: int
    revoked: int


UsersLoader = Callable[[], Awaitable[Mapping[str, UserState]]]


class Sessions(Protocol):
    """The dashboard's sessions as ``web/`` uses them: this process's memory
    (:class:`SessionStore`) or the fleet's Redis (``actors/fleet_sessions.py``)."""

    async def create(
        self, username: str, role: str, *, must_change_password: bool, password_hash: str
    ) -> tuple[str, Session]:
        """A new session for a user who just proved their password: (token, session)."""
        ...

    async def lookup(self, token: str) -> Session | None:
        """The live session of ``token``, refreshed when past half its life; None otherwise."""
        ...

    async def peek(self, token: str) -> Session | None:
        """The live session of ``token`` without refreshing it."""
        ...

    async def revoke(self, token: str) -> bool:
        """End the session of ``token``; whether there was one."""
        ...

    async def end(self, session: Session) -> None:
        """End ``session`` (signing out)."""
        ...

    async def revoke_user(self, username: str, *, keep: Session | None = None) -> int:
        """End every session of ``username`` but ``keep``; how many ended."""
        ...

    async def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        must_change_password: bool | None = None,
        password_hash: str | None = None,
    ) -> None:
        """Apply a change of the user to their live sessions."""
        ...

    async def follow_users(self) -> None:
        """Re-read the users: end the sessions of deleted users and changed passwords, apply
        role and must-change-password changes."""
        ...

    def statistics(self) -> SessionStatistics:
        """Live sessions and counters since start."""
        ...


def new_session(
    username: str,
    role: str,
    *,
    must_change_password: bool,
    password_hash: str,
    now: float,
    ttl_s: float,
) -> tuple[str, Session]:
    """A new random token and its session, valid from ``now`` for ``ttl_s``."""
    token = secrets.token_urlsafe(32)
    session = Session(
        username=username,
        role=role,
        must_change_password=must_change_password,
        created_at=now,
        expires_at=now + ttl_s,
        key=token_key(token),
        password_digest=password_digest(password_hash),
    )
    return token, session


def token_key(token: str) -> str:
    """The SHA-256 of a session token: what identifies the session wherever it is kept."""
    return hashlib.sha256(token.encode()).hexdigest()


def password_digest(password_hash: str) -> str:
    """A short digest of a user's password hash: tells a changed password without keeping it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def usable_token(token: str) -> bool:
    """Whether ``token`` could be a session's (anything empty or huge is refused unhashed)."""
    return bool(token) and len(token) <= 256


class SessionStore:
    """The sessions of the dashboard; ``run`` sweeps expired ones and follows user changes."""

    def __init__(
        self,
        ttl_s: float,
        load_users: UsersLoader,
        *,
        clock: Callable[[], float] | None = None,
        users_refresh_s: float = USERS_REFRESH_S,
    ) -> None:
        import time

        self._ttl = ttl_s
        self._load_users = load_users
        self._clock = clock or time.time
        self._users_refresh_s = users_refresh_s
        self._sessions: dict[str, Session] = {}
        self._created = self._expired = self._revoked = 0
        self._closed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sweep and follow the users table until :meth:`close`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_and_follow)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    async def _sweep_and_follow(self) -> None:
        next_sweep = trio.current_time() + SWEEP_EVERY_S
        while True:
            await trio.sleep(self._users_refresh_s)
            await self.follow_users()
            if trio.current_time() >= next_sweep:
                self.sweep()
                next_sweep = trio.current_time() + SWEEP_EVERY_S

    def close(self) -> None:
        """Stop the background work; sessions end with the process."""
        self._closed.set()

    # -- the facade ---------------------------------------------------------------------------

    async def create(
        self, username: str, role: str, *, must_change_password: bool, password_hash: str
    ) -> tuple[str, Session]:
        """A new session for a user who just proved their password: (token, session)."""
        await trio.lowlevel.checkpoint()
        self._make_room(username)
        token, session = new_session(
            username,
            role,
            must_change_password=must_change_password,
            password_hash=password_hash,
            now=self._clock(),
            ttl_s=self._ttl,
        )
        self._sessions[session.key] = session
        self._created += 1
        return token, session

    async def lookup(self, token: str) -> Session | None:
        """The live session of ``token``, refreshed when past half its life; None otherwise."""
        await trio.lowlevel.checkpoint()
        if not usable_token(token):
            return None
        key = token_key(token)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires_at:
            del self._sessions[key]
            self._expired += 1
            return None
        if session.expires_at - now < self._ttl / 2:
            session.expires_at = now + self._ttl
        return session

    async def peek(self, token: str) -> Session | None:
        """The live session of ``token`` without refreshing it: for checks that are not the
        user's activity (an open live feed re-checking its session)."""
        await trio.lowlevel.checkpoint()
        session = self._sessions.get(token_key(token)) if usable_token(token) else None
        if session is None or self._clock() >= session.expires_at:
            return None
        return session

    async def revoke(self, token: str) -> bool:
        """End the session of ``token``; whether there was one."""
        await trio.lowlevel.checkpoint()
        if self._sessions.pop(token_key(token), None) is None:
            return False
        self._revoked += 1
        return True

    async def end(self, session: Session) -> None:
        """End ``session`` (signing out)."""
        await trio.lowlevel.checkpoint()
        if self._sessions.pop(session.key, None) is not None:
            self._revoked += 1

    async def revoke_user(self, username: str, *, keep: Session | None = None) -> int:
        """End every session of ``username`` but ``keep``; how many ended."""
        await trio.lowlevel.checkpoint()
        kept = keep.key if keep is not None else None
        ended = [session.key for session in self._sessions_of(username) if session.key != kept]
        for key in ended:
            del self._sessions[key]
        self._revoked += len(ended)
        return len(ended)

    async def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        must_change_password: bool | None = None,
        password_hash: str | None = None,
    ) -> None:
        """Apply a change of the user to their live sessions."""
        await trio.lowlevel.checkpoint()
        for session in self._sessions_of(username):
            if role is not None:
                session.role = role
            if must_change_password is not None:
                session.must_change_password = must_change_password
            if password_hash is not None:
                session.password_digest = password_digest(password_hash)

    def sweep(self) -> int:
        """Drop expired sessions; how many."""
        now = self._clock()
        expired = [key for key, session in self._sessions.items() if now >= session.expires_at]
        for key in expired:
            del self._sessions[key]
        self._expired += len(expired)
        return len(expired)

    def statistics(self) -> SessionStatistics:
        """Live sessions and counters since start."""
        return SessionStatistics(
            active=len(self._sessions),
            created=self._created,
            expired=self._expired,
            revoked=self._revoked,
        )

    # -- a copy of sessions kept elsewhere (actors/fleet_sessions.py) ----------------------------

    def remember(self, session: Session) -> None:
        """Keep a copy of ``session`` (held in the fleet's Redis), replacing an older copy, so
        that it still works here while Redis is unreachable."""
        if session.key not in self._sessions:
            self._make_room(session.username)
        self._sessions[session.key] = dataclasses.replace(session)

    def forget(self, key: str) -> None:
        """Drop the copy of the session ``key`` (it ended, or expired, elsewhere)."""
        self._sessions.pop(key, None)

    def keys_of(self, username: str) -> list[str]:
        """The keys of the sessions of ``username`` kept here."""
        return [session.key for session in self._sessions_of(username)]

    def copy_of(self, key: str) -> Session | None:
        """The session ``key`` as kept here, whether or not it has expired."""
        return self._sessions.get(key)

    # -- internals ----------------------------------------------------------------------------

    def _sessions_of(self, username: str) -> list[Session]:
        """The live sessions of ``username``, however it is spelt (:func:`fold_username`)."""
        folded = fold_username(username)
        return [s for s in self._sessions.values() if fold_username(s.username) == folded]

    def _make_room(self, username: str) -> None:
        mine = self._sessions_of(username)
        if len(mine) >= MAX_SESSIONS_PER_USER:
            oldest = min(mine, key=lambda s: s.created_at)
            del self._sessions[oldest.key]
            self._revoked += 1
        if len(self._sessions) >= MAX_SESSIONS:
            self.sweep()
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            del self._sessions[oldest.key]
            self._revoked += 1

    async def follow_users(self) -> None:
        """Re-read the users: end the sessions of deleted users and changed passwords, apply
        role and must-change-password changes (also called when a change is announced)."""
        if not self._sessions:
            return
        try:
            users = await self._load_users()
        except Exception:
            log.exception("could not re-read the users; sessions kept as they are")
            return
        self.apply_users(users)

    def apply_users(self, users: Mapping[str, UserState]) -> None:
        """End the sessions of users not in ``users`` or whose password changed; apply roles
        and must-change-password to the others."""
        by_name = {fold_username(name): state for name, state in users.items()}
        ended = 0
        for key, session in list(self._sessions.items()):
            state = by_name.get(fold_username(session.username))
            if state is None or password_digest(state.password_hash) != session.password_digest:
                del self._sessions[key]
                ended += 1
                continue
            session.role = state.role
            session.must_change_password = state.must_change_password
        if ended:
            self._revoked += ended
            log.info("ended %d session(s) of deleted users or changed passwords", ended)
