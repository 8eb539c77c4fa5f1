"""Clients' names for the ids the dashboard shows, on both backends, and renames noticed."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from storage.client_names import client_names, every_client_name
from storage.clients import auth_generation, create_client, delete_client, update_client
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.storage_backends import connect

NOW = 1_700_000_000_000


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    connection = connect(database_url)
    try:
        yield connection
    finally:
        connection.close()


def new_client(conn: Connection, name: str) -> str:
    client, _token, _plain = in_immediate_transaction(
        conn, partial(create_client, name=name, now_ms=NOW)
    )
    return client.id


def test_names_of_the_ids_asked_for_only(conn: Connection) -> None:
    alpha = new_client(conn, "alpha")
    beta = new_client(conn, "beta")
    gone = new_client(conn, "gone")
    in_immediate_transaction(conn, partial(delete_client, client_id=gone))
    # A deleted client, a static key's client and an anonymous call have no name: the dashboard
    # shows their id or label instead.
    asked = [alpha, None, "", "static", gone, alpha, "cl_never_existed"]
    assert client_names(conn, asked) == {alpha: "alpha"}
    assert client_names(conn, [alpha, beta]) == {alpha: "alpha", beta: "beta"}
    assert client_names(conn, []) == {}
    assert every_client_name(conn) == {alpha: "alpha", beta: "beta"}


def test_many_ids_at_once(conn: Connection) -> None:
    made = {new_client(conn, f"client {n}"): f"client {n}" for n in range(3)}
    # More ids than one statement binds at a time: asked in several, answered as one.
    asked = [*made, *(f"cl_unknown_{n}" for n in range(1200))]
    assert client_names(conn, asked) == made


def test_a_rename_is_seen_at_once(conn: Connection) -> None:
    alpha = new_client(conn, "alpha")
    in_immediate_transaction(
        conn, partial(update_client, client_id=alpha, now_ms=NOW + 1, name="Alpha team")
    )
    assert client_names(conn, [alpha]) == {alpha: "Alpha team"}


def test_a_rename_moves_the_change_counter(conn: Connection) -> None:
    """The key table in memory also serves the live feed's names: a rename must reload it."""
    alpha = new_client(conn, "alpha")
    before = auth_generation(conn)
    in_immediate_transaction(
        conn, partial(update_client, client_id=alpha, now_ms=NOW + 1, name="renamed")
    )
    assert auth_generation(conn) == before + 1
    # The same name again is no change.
    in_immediate_transaction(
        conn, partial(update_client, client_id=alpha, now_ms=NOW + 2, name="renamed")
    )
    assert auth_generation(conn) == before + 1
