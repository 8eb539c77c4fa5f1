"""Dashboard users in SQLite: validation, case-insensitive names, last-admin protection."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import pytest

from storage import UNCHANGED
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from storage.users import (
    Role,
    UserExists,
    UserRow,
    count_admins,
    count_users,
    create_user,
    delete_user,
    get_user,
    list_users,
    record_login,
    set_password,
    update_user,
)
from tests.storage_backends import connect, writer_on
from tests.storage_backends import reader as open_reader

T = TypeVar("T")

NOW = 1_700_000_000_000
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"


@pytest.fixture
def db(database_url: str) -> str:
    """The database of one test: a SQLite file or a fresh PostgreSQL database."""
    return database_url


@pytest.fixture
def conn(db: str) -> Iterator[Connection]:
    connection = connect(db)
    try:
        yield connection
    finally:
        connection.close()


def write(conn: Connection, fn: Callable[[Connection], T]) -> T:
    """Run ``fn`` the way the CLI and the writer do: in its own IMMEDIATE transaction."""
    return in_immediate_transaction(conn, fn)


def new_user(conn: Connection, username: str, role: Role = "viewer", **kwargs: object) -> UserRow:
    return write(
        conn,
        partial(
            create_user,
            username=username,
            password_hash=HASH,
            role=role,
            now_ms=NOW,
            **kwargs,  # type: ignore[arg-type]
        ),
    )


# --- create / get / list --------------------------------------------------------------------------


def test_create_and_get(conn: Connection) -> None:
    assert count_users(conn) == 0
    user = new_user(conn, "Alice", "admin", display_name="  Alice A.  ", must_change_password=True)
    assert user.username == "Alice"  # stored as given
    assert user.role == "admin"
    assert user.display_name == "Alice A."
    assert user.must_change_password is True
    assert user.password_hash == HASH
    assert (user.created_at, user.updated_at, user.last_login_at) == (NOW, NOW, None)
    assert get_user(conn, "Alice") == user
    assert get_user(conn, "alice") == user
    assert get_user(conn, "ALICE") == user
    assert get_user(conn, "bob") is None
    assert (count_users(conn), count_admins(conn)) == (1, 1)


def test_defaults(conn: Connection) -> None:
    user = new_user(conn, "viewer1")
    assert user.role == "viewer"
    assert user.display_name == ""
    assert user.must_change_password is False
    assert count_admins(conn) == 0


def test_list_users_by_username_ignoring_case(conn: Connection) -> None:
    for name in ("carol", "Bob", "alice", "dave.x"):
        new_user(conn, name)
    assert [u.username for u in list_users(conn)] == ["alice", "Bob", "carol", "dave.x"]
    assert count_users(conn) == 4


@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice", "aLiCe"])
def test_usernames_are_unique_ignoring_case(conn: Connection, taken: str) -> None:
    new_user(conn, "Alice")
    with pytest.raises(UserExists, match="is taken"):
        new_user(conn, taken)
    assert count_users(conn) == 1


def test_unicode_usernames_fold_beyond_ascii(conn: Connection) -> None:
    # SQLite's lower() folds ASCII only: "Ärger" and "ärger" would both pass a SQL check.
    new_user(conn, "Ärger")
    with pytest.raises(UserExists):
        new_user(conn, "ärger")
    # NFD input is stored and found as NFC.
    decomposed = unicodedata.normalize("NFD", "Émile")
    user = new_user(conn, decomposed)
    assert user.username == "Émile"
    assert get_user(conn, decomposed) == user
    assert get_user(conn, "émile") == user


def test_user_exists_is_a_value_error() -> None:
    assert issubclass(UserExists, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": ""}, "username must not be empty"),
        ({"username": "x" * 65}, "username must be at most 64"),
        ({"username": "with space"}, "username may contain only"),
        ({"username": "semi;colon"}, "username may contain only"),
        ({"username": "new\nline"}, "username may contain only"),
        ({"username": "emoji😀"}, "username may contain only"),
        ({"username": "super²"}, "username may contain only"),
        ({"username": 42}, "username must be text"),
        ({"role": "root"}, "role must be one of admin, viewer"),
        ({"role": "Admin"}, "role must be one of"),
        ({"display_name": "d" * 201}, "display_name must be at most 200"),
        ({"display_name": "a\x1b[31m"}, "display_name must not contain control"),
        ({"password_hash": ""}, "password_hash must be non-empty"),
        ({"must_change_password": 1}, "must_change_password must be true or false"),
    ],
)
def test_create_validates(conn: Connection, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"username": "ok", "password_hash": HASH, "role": "viewer"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        write(conn, partial(create_user, now_ms=NOW, **args))  # type: ignore[arg-type]
    assert count_users(conn) == 0


def test_accepted_usernames(conn: Connection) -> None:
    for name in ("a", "x" * 64, "first.last", "under_score", "da-sh", "me@example.org", "José9"):
        assert new_user(conn, name).username == name


# --- update -------------------------------------------------------------------------------------


def test_update_only_the_fields_given(conn: Connection) -> None:
    new_user(conn, "root", "admin")
    user = new_user(conn, "Bob", display_name="Bob")
    updated = write(conn, partial(update_user, username="BOB", role="admin", now_ms=NOW + 5))
    assert (updated.role, updated.display_name, updated.updated_at) == ("admin", "Bob", NOW + 5)
    assert updated.username == "Bob"
    assert updated.created_at == NOW
    updated = write(
        conn,
        partial(update_user, username="bob", display_name="Robert", role=UNCHANGED, now_ms=NOW + 6),
    )
    assert (updated.role, updated.display_name) == ("admin", "Robert")
    # Nothing given: nothing changes, not even updated_at.
    same = write(conn, partial(update_user, username="bob", now_ms=NOW + 7))
    assert same == updated == get_user(conn, "bob")
    assert same.id == user.id


def test_update_validates(conn: Connection) -> None:
    new_user(conn, "bob")
    with pytest.raises(ValueError, match="role must be one of"):
        write(conn, partial(update_user, username="bob", role="owner", now_ms=NOW))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="display_name must be at most"):
        write(conn, partial(update_user, username="bob", display_name="x" * 300, now_ms=NOW))
    user = get_user(conn, "bob")
    assert user is not None
    assert (user.role, user.updated_at) == ("viewer", NOW)


def test_last_admin_cannot_be_demoted(conn: Connection) -> None:
    new_user(conn, "root", "admin")
    new_user(conn, "viewer1")
    with pytest.raises(ValueError, match="last admin"):
        write(conn, partial(update_user, username="ROOT", role="viewer", now_ms=NOW + 1))
    # Renaming the last admin, or "promoting" it again, is fine.
    write(conn, partial(update_user, username="root", role="admin", display_name="R", now_ms=NOW))
    new_user(conn, "second", "admin")
    demoted = write(conn, partial(update_user, username="root", role="viewer", now_ms=NOW + 2))
    assert demoted.role == "viewer"
    assert count_admins(conn) == 1
    with pytest.raises(ValueError, match="last admin"):
        write(conn, partial(update_user, username="second", role="viewer", now_ms=NOW + 3))
    # A viewer can always be changed, even when there is a single admin.
    write(conn, partial(update_user, username="viewer1", role="viewer", now_ms=NOW + 4))


def test_set_password(conn: Connection) -> None:
    new_user(conn, "Bob", must_change_password=True)
    user = write(
        conn,
        partial(
            set_password,
            username="bob",
            password_hash="$argon2id$new",
            must_change_password=False,
            now_ms=NOW + 9,
        ),
    )
    assert user.password_hash == "$argon2id$new"
    assert user.must_change_password is False
    assert user.updated_at == NOW + 9
    assert get_user(conn, "BOB") == user
    with pytest.raises(ValueError, match="password_hash must be non-empty"):
        write(
            conn,
            partial(
                set_password, username="bob", password_hash="", must_change_password=True, now_ms=0
            ),
        )


# --- delete ---------------------------------------------------------------------------------------


def test_delete_user(conn: Connection) -> None:
    new_user(conn, "root", "admin")
    new_user(conn, "Gone")
    write(conn, partial(delete_user, username="gONE"))
    assert get_user(conn, "gone") is None
    assert [u.username for u in list_users(conn)] == ["root"]


def test_last_admin_cannot_be_deleted(conn: Connection) -> None:
    new_user(conn, "root", "admin")
    with pytest.raises(ValueError, match="last admin"):
        write(conn, partial(delete_user, username="Root"))
    new_user(conn, "other", "admin")
    write(conn, partial(delete_user, username="root"))
    assert count_admins(conn) == 1
    with pytest.raises(ValueError, match="last admin"):
        write(conn, partial(delete_user, username="other"))


def test_unknown_users_raise_lookup_error(conn: Connection) -> None:
    with pytest.raises(LookupError, match="unknown user: nobody"):
        write(conn, partial(update_user, username="nobody", role="admin", now_ms=NOW))
    with pytest.raises(LookupError, match="unknown user"):
        write(conn, partial(update_user, username="nobody", now_ms=NOW))
    with pytest.raises(LookupError, match="unknown user"):
        write(
            conn,
            partial(
                set_password,
                username="nobody",
                password_hash=HASH,
                must_change_password=False,
                now_ms=NOW,
            ),
        )
    with pytest.raises(LookupError, match="unknown user"):
        write(conn, partial(delete_user, username="nobody"))


# --- logins ---------------------------------------------------------------------------------------


def test_record_login(conn: Connection) -> None:
    new_user(conn, "Bob")
    write(conn, partial(record_login, username="bob", now_ms=NOW + 100))
    user = get_user(conn, "bob")
    assert user is not None
    assert user.last_login_at == NOW + 100
    assert user.updated_at == NOW  # a login is not an edit
    write(conn, partial(record_login, username="BOB", now_ms=NOW + 50))  # an older, late write
    assert get_user(conn, "bob") == user
    write(conn, partial(record_login, username="BOB", now_ms=NOW + 200))
    user = get_user(conn, "bob")
    assert user is not None
    assert user.last_login_at == NOW + 200
    # A user deleted between the password check and this write is not an error.
    write(conn, partial(record_login, username="deleted-meanwhile", now_ms=NOW))


# --- through the writer, as the server does -------------------------------------------------------


async def test_users_through_the_storage_writer(db: str) -> None:
    async with writer_on(db) as writer:
        created = await writer.execute(
            partial(create_user, username="Admin", password_hash=HASH, role="admin", now_ms=NOW)
        )
        with pytest.raises(UserExists):
            await writer.execute(
                partial(create_user, username="admin", password_hash=HASH, role="viewer", now_ms=0)
            )
        with pytest.raises(ValueError, match="last admin"):
            await writer.execute(partial(delete_user, username="admin"))
        admins = await writer.execute(count_admins)
    assert admins == 1
    reader = open_reader(db)
    try:
        assert get_user(reader, "ADMIN") == created
    finally:
        reader.close()


def test_names_equal_under_unicode_case_folding_are_one_user(conn: Connection) -> None:
    # str.lower() keeps "ß" and the final sigma "ς": full case folding is what makes these equal.
    user = new_user(conn, "Straße")
    for other in ("STRASSE", "strasse", unicodedata.normalize("NFD", "STRAẞE")):
        with pytest.raises(UserExists):
            new_user(conn, other)
        assert get_user(conn, other) == user
    greek = new_user(conn, "Σίσυφος")
    assert get_user(conn, "ΣΊΣΥΦΟΣ") == greek
