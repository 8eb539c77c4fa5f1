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


def test_tokens_are_long_random_and_only_their_digest_is_kept() -> None:
    sessions = store(Clock())
    token, session = sessions.create("ann", "admin", must_change_password=False, password_hash="h1")
    assert len(token) >= 43  # 32 bytes, URL-safe base64
    assert token not in session.key
    assert sessions.lookup(token) is session
    assert sessions.lookup(token + "x") is None
    assert sessions.lookup("") is None


def test_expiry_and_sliding_refresh() -> None:
    clock = Clock()
    sessions = store(clock)
    token, session = sessions.create("ann", "viewer", must_change_password=False, password_hash="h")
    clock.now += 1000  # under half the hour: no refresh
    assert sessions.lookup(token) is session
    assert session.expires_at == 1_000.0 + 3600
    clock.now += 1000  # past half: extended a full hour from now
    sessions.lookup(token)
    assert session.expires_at == clock.now + 3600
    clock.now += 3600
    assert sessions.lookup(token) is None
    assert sessions.statistics().expired == 1


def test_revoke_all_for_a_user_keeps_one() -> None:
    sessions = store(Clock())
    tokens = [
        sessions.create("Ann", "admin", must_change_password=False, password_hash="h")[0]
        for _ in range(3)
    ]
    other, _ = sessions.create("bob", "admin", must_change_password=False, password_hash="h")
    keep = sessions.lookup(tokens[0])
    assert sessions.revoke_user("ann", keep=keep) == 2
    assert sessions.lookup(tokens[0]) is keep
    assert sessions.lookup(tokens[1]) is None
    assert sessions.lookup(other) is not None


def test_a_user_holds_a_bounded_number_of_sessions() -> None:
    clock = Clock()
    sessions = store(clock)
    first, _ = sessions.create("ann", "admin", must_change_password=False, password_hash="h")
    for _ in range(MAX_SESSIONS_PER_USER):
        clock.now += 1
        sessions.create("ann", "admin", must_change_password=False, password_hash="h")
    assert sessions.lookup(first) is None
    assert sessions.statistics().active == MAX_SESSIONS_PER_USER


async def test_sessions_follow_changes_made_elsewhere() -> None:
    users = {
        "ann": UserState("admin", False, "hash-1"),
        "bob": UserState("admin", False, "hash-2"),
        "cid": UserState("viewer", False, "hash-3"),
    }
    sessions = store(Clock(), users)
    ann, _ = sessions.create("ann", "admin", must_change_password=False, password_hash="hash-1")
    bob, _ = sessions.create("bob", "admin", must_change_password=False, password_hash="hash-2")
    cid, _ = sessions.create("cid", "viewer", must_change_password=False, password_hash="hash-3")
    users["ann"] = UserState("admin", True, "hash-reset")  # the CLI reset her password
    del users["bob"]  # deleted
    users["cid"] = UserState("admin", False, "hash-3")  # promoted
    async with trio.open_nursery() as nursery:
        await nursery.start(sessions.run)
        await trio.sleep(0.1)
        sessions.close()
    assert sessions.lookup(ann) is None
    assert sessions.lookup(bob) is None
    promoted = sessions.lookup(cid)
    assert promoted is not None
    assert promoted.role == "admin"


def test_a_users_sessions_are_found_by_any_spelling_of_the_name() -> None:
    sessions = store(Clock())
    tokens = [
        sessions.create("René", "viewer", must_change_password=False, password_hash="h")[0]
        for _ in range(2)
    ]
    sessions.update_user(unicodedata.normalize("NFD", "rené"), role="admin")
    assert [sessions.peek(token).role for token in tokens] == ["admin", "admin"]  # type: ignore[union-attr]
    assert sessions.revoke_user(unicodedata.normalize("NFD", "RENÉ")) == 2
