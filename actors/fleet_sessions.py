"""FleetSessionStore: the dashboard's sessions in the fleet's Redis, valid on every process.

A sign-in on one process is a session on all; a sign-out, a password change, a role change or a
user's deletion is one script in Redis, so every process's next look-up sees it (each look-up
is one round trip: nothing is cached that could be stale). The layout and the scripts are in
``actors/fleet_session_scripts.py``; the semantics are :class:`~actors.session_store.SessionStore`'s
(the token's SHA-256 only, a ttl with sliding refresh, per-user and global caps), and Redis
expires every session key at its end, so nothing outlives it.

When Redis does not answer, the ``on_redis_down`` policy applies. ``"refuse"``: the dashboard
answers 503 with ``retry-after`` until it is back. ``"local"``: this process serves from its own
copy (a :class:`SessionStore` holding every session it has seen or made), which means during the
outage a sign-in here works only here, and a sign-out, a revocation or a role change made on
another process is not seen here until Redis answers again. When it does, what this process did
meanwhile is written back (sessions made or changed here, sign-outs here) and the users are
followed again, so the fleet agrees once more, without a restart.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Final

import trio

from actors import fleet_session_scripts as lua
from actors.redis_answers import AnsweringLink
from actors.redis_link import RedisDown, RedisLink
from actors.session_store import (
    MAX_SESSIONS,
    MAX_SESSIONS_PER_USER,
    SWEEP_EVERY_S,
    USERS_REFRESH_S,
    Session,
    SessionStatistics,
    SessionStore,
    UsersLoader,
    new_session,
    password_digest,
    token_key,
    usable_token,
)
from proxy.errors import UpstreamUnavailable
from proxy.usernames import fold_username

log = logging.getLogger("llm_proxy.sessions")

RETRY_AFTER_S: Final = 1  # the link's probe tries Redis every second
# Sign-outs made here during an outage, to replay; beyond this many the oldest are dropped (they
# still expire with their ttl).
MAX_PENDING_ENDS: Final = MAX_SESSIONS


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class FleetSessionStore:
    """Sessions in Redis, with this process's copy for when Redis is down; ``run`` follows user
    changes (also on demand: :meth:`follow_users`) and writes back after an outage."""

    def __init__(
        self,
        link: RedisLink,
        ttl_s: float,
        load_users: UsersLoader,
        *,
        clock: Callable[[], float] | None = None,
        users_refresh_s: float = USERS_REFRESH_S,
        max_sessions: int = MAX_SESSIONS,
        max_sessions_per_user: int = MAX_SESSIONS_PER_USER,
    ) -> None:
        self._link = link
        self._redis = AnsweringLink(link, "sessions")
        self._ttl = ttl_s
        self._load_users = load_users
        # Wall clock: expiry times are compared by every process of the fleet (hosts run NTP).
        self._clock = clock or time.time
        self._users_refresh_s = users_refresh_s
        self._max = max_sessions
        self._max_per_user = max_sessions_per_user
        self._local = SessionStore(ttl_s, load_users, clock=self._clock)
        client = link.client
        self._create = client.register_script(lua.CREATE)
        self._lookup = client.register_script(lua.LOOKUP)
        self._end = client.register_script(lua.END)
        self._revoke_user = client.register_script(lua.REVOKE_USER)
        self._update_user = client.register_script(lua.UPDATE_USER)
        self._follow = client.register_script(lua.FOLLOW_USERS)
        self._count = client.register_script(lua.COUNT)
        # What this process did while Redis was down, written back when it answers again.
        self._changed_while_down: set[str] = set()
        self._ended_while_down: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._back = trio.Event()
        link.on_change(self._link_changed)
        self._active = 0
        self._created = self._expired = self._revoked = 0
        self._closed = trio.Event()

    # -- the actor ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the users (and count the sessions), write back after outages, until
        :meth:`close`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_periodically)
            nursery.start_soon(self._write_back_when_up)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stop the background work (the sessions stay in Redis)."""
        self._closed.set()

    def statistics(self) -> SessionStatistics:
        """Live sessions of the fleet (as last counted; this process's own while Redis is down)
        and this process's counters since start."""
        return SessionStatistics(
            active=self._active if self._link.up else self._local.statistics().active,
            created=self._created,
            expired=self._expired,
            revoked=self._revoked,
        )

    # -- the facade -----------------------------------------------------------------------------

    async def create(
        self, username: str, role: str, *, must_change_password: bool, password_hash: str
    ) -> tuple[str, Session]:
        """A new session, valid on every process: (token, session)."""
        token, session = new_session(
            username,
            role,
            must_change_password=must_change_password,
            password_hash=password_hash,
            now=self._clock(),
            ttl_s=self._ttl,
        )
        try:
            made_room = await self._store(session)
        except RedisDown:
            self._refuse_if_policy()
            self._changed_while_down.add(session.key)
        else:
            self._revoked += made_room
        self._local.remember(session)
        self._created += 1
        return token, session

    async def lookup(self, token: str) -> Session | None:
        """The live session of ``token``, refreshed when past half its life; None otherwise."""
        return await self._find(token, refresh=True)

    async def peek(self, token: str) -> Session | None:
        """The live session of ``token`` without refreshing it."""
        return await self._find(token, refresh=False)

    async def revoke(self, token: str) -> bool:
        """End the session of ``token`` everywhere; whether there was one."""
        if not usable_token(token):
            await trio.lowlevel.checkpoint()
            return False
        return await self._end_key(token_key(token))

    async def end(self, session: Session) -> None:
        """End ``session`` everywhere (signing out)."""
        await self._end_key(session.key)

    async def revoke_user(self, username: str, *, keep: Session | None = None) -> int:
        """End every session of ``username`` on every process but ``keep``; how many ended."""
        user = fold_username(username)
        kept = keep.key if keep is not None else ""
        mine = [key for key in self._local.keys_of(username) if key != kept]
        local = await self._local.revoke_user(username, keep=keep)
        try:
            ended = int(
                await self._redis.call(
                    lambda _: self._revoke_user(args=[*self._prefixes(), user, kept])
                )
            )
        except RedisDown:
            self._refuse_if_policy()
            for key in mine:
                self._note_ended_while_down(key)
            # The sessions this process never saw end on write-back, when the users are followed
            # again (a changed password, a deleted user).
            ended = local
        self._revoked += ended
        return ended

    async def update_user(
        self,
        username: str,
        *,
        role: str | None = None,
        must_change_password: bool | None = None,
        password_hash: str | None = None,
    ) -> None:
        """Apply a change of the user to their live sessions on every process."""
        await self._local.update_user(
            username,
            role=role,
            must_change_password=must_change_password,
            password_hash=password_hash,
        )
        fields = [
            role or "",
            "" if must_change_password is None else str(int(must_change_password)),
            "" if password_hash is None else password_digest(password_hash),
        ]
        user = fold_username(username)
        try:
            await self._redis.call(
                lambda _: self._update_user(args=[*self._prefixes(), user, *fields])
            )
        except RedisDown:
            self._refuse_if_policy()
            self._changed_while_down.update(self._local.keys_of(username))

    async def follow_users(self) -> None:
        """Re-read the users: end the sessions of deleted users and changed passwords, apply
        role and must-change-password changes, in Redis and in this process's copy."""
        try:
            users = await self._load_users()
        except Exception:
            log.exception("could not re-read the users; sessions kept as they are")
            return
        self._local.apply_users(users)
        states: list[str] = []
        for name, state in users.items():
            states += [
                fold_username(name),
                state.role,
                str(int(state.must_change_password)),
                password_digest(state.password_hash),
            ]
        try:
            ended = int(
                await self._redis.call(lambda _: self._follow(args=[*self._all(), *states]))
            )
            self._active = int(
                await self._redis.call(
                    lambda _: self._count(args=[lua.ALL, str(_ms(self._clock()))])
                )
            )
        except RedisDown:
            return
        if ended:
            self._revoked += ended
            log.info("ended %d session(s) of deleted users or changed passwords", ended)

    # -- internals ------------------------------------------------------------------------------

    def _prefixes(self) -> list[str]:
        return [lua.SESSION, lua.USER, lua.ALL]

    def _all(self) -> list[str]:
        return [lua.SESSION, lua.USER, lua.ALL, lua.USERS]

    def _refuse_if_policy(self) -> None:
        if self._link.refuses:
            raise UpstreamUnavailable(
                "The dashboard's sessions are kept in Redis, which is unreachable; try again "
                "in a moment.",
                code="redis_unavailable",
                headers={"retry-after": str(RETRY_AFTER_S)},
            )

    async def _store(self, session: Session) -> int:
        """Write ``session`` to Redis (the caps applied); how many sessions made room for it."""
        args = [
            *self._all(),
            session.key,
            session.username,
            fold_username(session.username),
            session.role,
            str(int(session.must_change_password)),
            str(_ms(session.created_at)),
            str(_ms(session.expires_at)),
            session.password_digest,
            str(self._max_per_user),
            str(self._max),
            str(_ms(self._clock())),
        ]
        return int(await self._redis.call(lambda _: self._create(args=args)))

    async def _find(self, token: str, *, refresh: bool) -> Session | None:
        if not usable_token(token):
            await trio.lowlevel.checkpoint()
            return None
        key = token_key(token)
        args = [
            *self._prefixes(),
            key,
            str(_ms(self._clock())),
            str(_ms(self._ttl)),
            "1" if refresh else "0",
        ]
        try:
            found: object = await self._redis.call(lambda _: self._lookup(args=args))
        except RedisDown:
            self._refuse_if_policy()
            return await self._find_locally(token, key, refresh=refresh)
        if not isinstance(found, list):
            if key in self._changed_while_down:
                # Made or changed here during an outage and not yet written back (Redis has just
                # returned, or returned empty): this process's copy is the truth.
                return await self._write_back_one(token, key, refresh=refresh)
            self._local.forget(key)
            if found == 0:
                self._expired += 1
            return None
        username, role, mcp, created, expires, digest = (str(field) for field in found)
        session = Session(
            username=username,
            role=role,
            must_change_password=mcp == "1",
            created_at=int(created) / 1000,
            expires_at=int(float(expires)) / 1000,
            key=key,
            password_digest=digest,
        )
        self._local.remember(session)
        return session

    async def _find_locally(self, token: str, key: str, *, refresh: bool) -> Session | None:
        if not refresh:
            return await self._local.peek(token)
        before = self._local.copy_of(key)
        was = before.expires_at if before is not None else None
        found = await self._local.lookup(token)
        if found is not None and found.expires_at != was:
            self._changed_while_down.add(key)  # refreshed here: Redis learns it later
        return found

    async def _end_key(self, key: str) -> bool:
        had = self._local.copy_of(key) is not None
        self._local.forget(key)
        self._changed_while_down.discard(key)
        try:
            ended = await self._end_in_redis(key)
        except RedisDown:
            self._refuse_if_policy()
            self._note_ended_while_down(key)
            ended = had
        if ended:
            self._revoked += 1
        return ended

    async def _write_back_one(self, token: str, key: str, *, refresh: bool) -> Session | None:
        found = await self._find_locally(token, key, refresh=refresh)
        if found is None:
            self._changed_while_down.discard(key)
            return None
        try:
            await self._store(found)
        except RedisDown:
            self._refuse_if_policy()
            return found
        self._changed_while_down.discard(key)
        return found

    async def _end_in_redis(self, key: str) -> bool:
        args = [*self._prefixes(), key]
        return bool(await self._redis.call(lambda _: self._end(args=args)))

    def _note_ended_while_down(self, key: str) -> None:
        self._changed_while_down.discard(key)
        self._ended_while_down[key] = None
        while len(self._ended_while_down) > MAX_PENDING_ENDS:
            self._ended_while_down.popitem(last=False)

    def _link_changed(self, up: bool) -> None:
        if up:
            self._back.set()

    async def _follow_periodically(self) -> None:
        # The safety net: a change announced by the fleet's bus calls follow_users at once.
        next_sweep = trio.current_time() + SWEEP_EVERY_S
        while True:
            await self.follow_users()  # at once too: it counts the fleet's sessions
            await trio.sleep(self._users_refresh_s)
            if trio.current_time() >= next_sweep:
                self._local.sweep()
                next_sweep = trio.current_time() + SWEEP_EVERY_S

    async def _write_back_when_up(self) -> None:
        while True:
            await self._back.wait()
            self._back = trio.Event()
            try:
                await self._write_back()
            except RedisDown:
                continue  # down again: the next recovery writes back what is left
            await self.follow_users()

    async def _write_back(self) -> None:
        """Tell Redis what this process did while it was unreachable."""
        written = ended = 0
        while self._ended_while_down:
            key = next(iter(self._ended_while_down))
            await self._end_in_redis(key)
            del self._ended_while_down[key]
            ended += 1
        while self._changed_while_down:
            key = next(iter(self._changed_while_down))
            session = self._local.copy_of(key)
            if session is not None and session.expires_at > self._clock():
                await self._store(session)
                written += 1
            self._changed_while_down.discard(key)
        if written or ended:
            log.warning(
                "sessions: wrote back %d session(s) and %d sign-out(s) made during the outage",
                written,
                ended,
            )
