"""SessionStore on a hand-moved clock."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

import trio
import trio.testing

from actors.session_store import MAX_SESSIONS_PER_USER, SessionStore, UserState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock, users: dict[str, UserState] | None = None) -> SessionStore:
    async def load() -> Mapping[str, UserState]:
        return users or {}

    return SessionStore(3600.0, load, clock=clock, users_refresh_s=0.01)


async def test_tokens_are_long_random_and_only_their_digest_is_kept() -> None:
    sessions = store(Clock())
    token, session = await sessions.create(
        "ann", "admin", must_change_password=False, password_hash="h1"
    )
    assert len(token) >= 43  # 32 bytes, URL-safe base64
    assert token not in session.key
    assert await sessions.lookup(token) is session
    assert await sessions.lookup(token + "x") is None
    assert await sessions.lookup("") is None


async def test_expiry_and_sliding_refresh() -> None:
    clock = Clock()
    sessions = store(clock)
    token, session = await sessions.create(
        "ann", "viewer", must_change_password=False, password_hash="h"
    )
    clock.now += 1000  # under half the hour: no refresh
    assert await sessions.lookup(token) is session
    assert session.expires_at == 1_000.0 + 3600
    clock.now += 1000  # past half: extended a full hour from now
    await sessions.lookup(token)
    assert session.expires_at == clock.now + 3600
    clock.now += 3600
    assert await sessions.lookup(token) is None
    assert sessions.statistics().expired == 1


async def test_revoke_all_for_a_user_keeps_one() -> None:
    sessions = store(Clock())
    tokens = [
        (await sessions.create("Ann", "admin", must_change_password=False, password_hash="h"))[0]
        for _ in range(3)
    ]
    other, _ = await sessions.create("bob", "admin", must_change_password=False, password_hash="h")
    keep = await sessions.lookup(tokens[0])
    assert await sessions.revoke_user("ann", keep=keep) == 2
    assert await sessions.lookup(tokens[0]) is keep
    assert await sessions.lookup(tokens[1]) is None
    assert await sessions.lookup(other) is not None


async def test_a_user_holds_a_bounded_number_of_sessions() -> None:
    clock = Clock()
    sessions = store(clock)
    first, _ = await sessions.create("ann", "admin", must_change_password=False, password_hash="h")
    for _ in range(MAX_SESSIONS_PER_USER):
        clock.now += 1
        await sessions.create("ann", "admin", must_change_password=False, password_hash="h")
    assert await sessions.lookup(first) is None
    assert sessions.statistics().active == MAX_SESSIONS_PER_USER


async def test_sessions_follow_changes_made_elsewhere() -> None:
    users = {
        "ann": UserState("admin", False, "hash-1"),
        "bob": UserState("admin", False, "hash-2"),
        "cid": UserState("viewer", False, "hash-3"),
    }
    sessions = store(Clock(), users)
    ann, _ = await sessions.create(
        "ann", "admin", must_change_password=False, password_hash="hash-1"
    )
    bob, _ = await sessions.create(
        "bob", "admin", must_change_password=False, password_hash="hash-2"
    )
    cid, _ = await sessions.create(
        "cid", "viewer", must_change_password=False, password_hash="hash-3"
    )
    users["ann"] = UserState("admin", True, "hash-reset")  # the CLI reset her password
    del users["bob"]  # deleted
    users["cid"] = UserState("admin", False, "hash-3")  # promoted
    async with trio.open_nursery() as nursery:
        await nursery.start(sessions.run)
        await trio.sleep(0.1)
        sessions.close()
    assert await sessions.lookup(ann) is None
    assert await sessions.lookup(bob) is None
    promoted = await sessions.lookup(cid)
    assert promoted is not None
    assert promoted.role == "admin"


async def test_a_users_sessions_are_found_by_any_spelling_of_the_name() -> None:
    sessions = store(Clock())
    tokens = [
        (await sessions.create("René", "viewer", must_change_password=False, password_hash="h"))[0]
        for _ in range(2)
    ]
    await sessions.update_user(unicodedata.normalize("NFD", "rené"), role="admin")
    peeked = [await sessions.peek(token) for token in tokens]
    assert [session.role for session in peeked if session is not None] == ["admin", "admin"]
    assert await sessions.revoke_user(unicodedata.normalize("NFD", "RENÉ")) == 2
