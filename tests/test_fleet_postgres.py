"""Issue 19's fleet: two real ``llm-proxy serve`` processes on one PostgreSQL and one Redis.

Clients, keys and users made through one process's dashboard work on the other at once; the
calls served by both are in the one request log and usage summary, read through either; a key
revoked on one is refused by the other; nothing is kept in the SQLite file beside them.
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from storage.batch import write_batch
from storage.clients import add_key, create_client, list_keys, record_key_use
from storage.rollup import UPSERT_USAGE_HOURLY, UsageRollup
from storage.transaction import begin_statement, in_immediate_transaction, rollback_quietly
from storage.users import UserExists, create_user, delete_user, list_users
from tests.factories import make_record
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.fleet import admin_token, chat, running_fleet, write_fleet_config
from tests.process import CLIENT_KEY, ServerProcess, serve
from tests.redis_server import RedisServer
from tests.storage_backends import connect

SEEN_WITHIN_S = 1.0
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def fleet_config(
    fake_openai: FakeOpenAI, redis: RedisServer, postgres_url: str, tmp_path: Path
) -> Path:
    """One config for both processes: the fake upstream, the Redis, the PostgreSQL database."""
    return write_fleet_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        redis_url=redis.url,
        storage_url=postgres_url,
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def until_status(
    client: httpx.AsyncClient, server: ServerProcess, key: str, status: int
) -> None:
    """Call ``server`` with ``key`` until the answer is ``status``; fail past a second."""
    with trio.fail_after(SEEN_WITHIN_S):
        while (await chat(client, server, key)).status_code != status:
            await trio.sleep(0.02)


async def test_a_client_made_on_one_gateway_works_on_the_other_until_revoked_there(
    fleet_config: Path, tmp_path: Path
) -> None:
    database = tmp_path / "gateway.db"
    async with running_fleet(fleet_config, database, tmp_path, 2) as (one, two):
        admin_one, admin_two = await admin_token(one, database), await admin_token(two, database)
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=10, headers=bearer(admin_one)) as on_one,
            httpx.AsyncClient(base_url=two.url, timeout=10, headers=bearer(admin_two)) as on_two,
            httpx.AsyncClient(timeout=10) as caller,
        ):
            made = await on_one.post("/api/clients", json={"name": "shared", "key_name": "k1"})
            assert made.status_code == 201, made.text
            client_id, key = made.json()["id"], made.json()["token"]
            await until_status(caller, two, key, 200)
            # The other process reads the same row, and a second key made there works on the first.
            shown = await on_two.get(f"/api/clients/{client_id}")
            assert shown.status_code == 200, shown.text
            assert shown.json()["name"] == "shared"
            second = await on_two.post(f"/api/clients/{client_id}/tokens", json={"name": "k2"})
            assert second.status_code == 201, second.text
            await until_status(caller, one, second.json()["token"], 200)
            keys = (await on_one.get(f"/api/clients/{client_id}/tokens")).json()["data"]
            assert sorted(k["name"] for k in keys) == ["k1", "k2"]
            # Revoked through the second, refused by the first; the other key still works there.
            first_key = next(k for k in keys if k["name"] == "k1")
            revoked = await on_two.delete(f"/api/clients/{client_id}/tokens/{first_key['id']}")
            assert revoked.status_code == 200, revoked.text
            await until_status(caller, one, key, 401)
            assert (await chat(caller, one, second.json()["token"])).status_code == 200
    # Everything went to PostgreSQL: the SQLite path holds no database.
    assert not database.exists()


async def test_a_user_made_on_one_gateway_signs_in_on_the_other(
    fleet_config: Path, tmp_path: Path
) -> None:
    database = tmp_path / "gateway.db"
    async with running_fleet(fleet_config, database, tmp_path, 2) as (one, two):
        admin = bearer(await admin_token(one, database))
        async with httpx.AsyncClient(timeout=10) as client:
            made = await client.post(
                f"{one.url}/api/users", json={"username": "vera", "role": "viewer"}, headers=admin
            )
            assert made.status_code == 201, made.text
            one_time = made.json()["password"]
            login = await client.post(
                f"{two.url}/api/auth/login", json={"username": "vera", "password": one_time}
            )
            assert login.status_code == 200, login.text
            new_password = "vera-chose-a-long-password"
            changed = await client.post(
                f"{two.url}/api/auth/change-password",
                json={"current_password": one_time, "new_password": new_password},
                headers=bearer(login.json()["token"]),
            )
            assert changed.status_code == 200, changed.text
            # The password changed on the second process is the one the first checks.
            refused = await client.post(
                f"{one.url}/api/auth/login", json={"username": "vera", "password": one_time}
            )
            assert refused.status_code == 401
            again = await client.post(
                f"{one.url}/api/auth/login", json={"username": "vera", "password": new_password}
            )
            assert again.status_code == 200, again.text
            users = await client.get(f"{two.url}/api/users", headers=bearer(again.json()["token"]))
            assert users.status_code == 403  # a viewer, wherever she signs in
            listed = await client.get(f"{two.url}/api/users", headers=admin)
            assert {user["username"] for user in listed.json()["data"]} == {"admin", "vera"}


async def test_calls_through_both_gateways_are_in_one_log_read_through_either(
    fleet_config: Path, postgres_url: str, tmp_path: Path
) -> None:
    database = tmp_path / "gateway.db"
    through_one, through_two = 24, 16
    async with running_fleet(fleet_config, database, tmp_path, 2) as (one, two):
        admin = bearer(await admin_token(one, database))
        request_ids: set[str] = set()
        async with httpx.AsyncClient(timeout=10) as client:
            made = await client.post(f"{one.url}/api/clients", json={"name": "team"}, headers=admin)
            assert made.status_code == 201, made.text
            team_id, team_key = made.json()["id"], made.json()["token"]
            # Known to the second (asked where no call is logged, so the counts stay exact).
            with trio.fail_after(SEEN_WITHIN_S):
                while (await models(client, two, team_key)).status_code != 200:
                    await trio.sleep(0.02)

            async def call(server: ServerProcess, key: str) -> None:
                answer = await chat(client, server, key)
                assert answer.status_code == 200, answer.text
                request_ids.add(answer.headers["x-request-id"])

            # Both clients through both processes at once: both writers update the same
            # hour's rollup rows concurrently.
            async with trio.open_nursery() as nursery:
                for n in range(through_one + through_two):
                    server = one if n < through_one else two
                    nursery.start_soon(call, server, team_key if n % 2 else CLIENT_KEY)
            total = through_one + through_two
            for server in (one, two):
                # Each writer batches: wait until both have written, then the counts are exact.
                with trio.fail_after(10):
                    while (await summary(client, server, admin))["requests"] != total:
                        await trio.sleep(0.05)
            for server in (one, two):
                totals = await summary(client, server, admin)
                assert (totals["requests"], totals["errors"]) == (total, 0)
                per_client = await client.get(f"{server.url}/api/usage/clients", headers=admin)
                requests = {row["key"]: row["requests"] for row in per_client.json()["data"]}
                assert requests == {"static": total // 2, team_id: total // 2}
                assert await logged_request_ids(client, server, admin) == request_ids
        for server in (one, two):
            assert "records failed" not in server.stderr, server.stderr
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM llm_requests")
        assert row.fetchone() == (total, total)


async def models(client: httpx.AsyncClient, server: ServerProcess, key: str) -> httpx.Response:
    """``GET /v1/models`` with ``key``: whether ``server`` knows it, without a logged call."""
    return await client.get(f"{server.url}/v1/models", headers=bearer(key))


async def summary(
    client: httpx.AsyncClient, server: ServerProcess, headers: dict[str, str]
) -> dict[str, int]:
    """``/api/usage/summary`` as ``server`` answers it."""
    answer = await client.get(f"{server.url}/api/usage/summary", headers=headers)
    assert answer.status_code == 200, answer.text
    totals: dict[str, int] = answer.json()
    return totals


async def logged_request_ids(
    client: httpx.AsyncClient, server: ServerProcess, headers: dict[str, str]
) -> set[str]:
    """Every request id of ``/api/usage/requests`` as ``server`` pages it (each seen once)."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        answer = await client.get(
            f"{server.url}/api/usage/requests", params=params, headers=headers
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen += [row["request_id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    return set(seen)


async def test_two_gateways_started_at_once_on_an_empty_database_both_serve_with_one_admin(
    fleet_config: Path, postgres_url: str, tmp_path: Path
) -> None:
    # Two hosts booting together: both migrate (one waits on the other's advisory lock), both
    # find no user, both try to create the first admin; the second must give way, not fail.
    servers: list[ServerProcess] = []
    exits: list[int] = []
    all_listening, done = trio.Event(), trio.Event()

    async def host(n: int) -> None:
        """One host's process for the test's whole length (its nursery stays in this task)."""
        directory = tmp_path / f"host{n}"
        directory.mkdir()
        async with serve(fleet_config, directory / "gateway.db", directory) as server:
            servers.append(server)
            if len(servers) == 2:
                all_listening.set()
            await done.wait()
            server.send_signal(signal.SIGTERM)
            exits.append(await server.wait())

    async with trio.open_nursery() as nursery:
        for n in range(2):
            nursery.start_soon(host, n)
        with trio.fail_after(60):
            await all_listening.wait()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                for server in servers:
                    assert (await chat(client, server, CLIENT_KEY)).status_code == 200
        finally:
            done.set()
    assert exits == [0, 0], [server.stderr for server in servers]
    # One admin, one password file: the host whose process created it.
    files = list(tmp_path.glob("host*/llm-proxy-initial-admin-password"))
    assert len(files) == 1, [server.stderr for server in servers]
    with psycopg.connect(postgres_url) as conn:
        users = conn.execute("SELECT username FROM users").fetchall()
    assert users == [("admin",)]


async def test_the_same_username_made_at_once_on_two_gateways_is_taken_not_a_database_error(
    postgres_url: str,
) -> None:
    # Each gateway's writer checks for the name, then inserts, in its own transaction: on
    # PostgreSQL the two checks can both pass (SQLite's BEGIN IMMEDIATE would serialise them),
    # and the unique index then refuses the second insert. That is "taken" (409), not a 500.
    one, two = connect(postgres_url), connect(postgres_url)
    try:
        user = partial(
            create_user, username="vera", password_hash=HASH, role="viewer", now_ms=1_000
        )
        one.execute(begin_statement(one))
        user(one)  # not committed yet: invisible to the other's check
        two.execute(begin_statement(two))
        async with trio.open_nursery() as nursery:
            second: list[BaseException] = []

            def create_on_two() -> None:
                try:
                    user(two)  # waits on the index for the first transaction's outcome
                except BaseException as exc:
                    second.append(exc)
                    rollback_quietly(two)

            nursery.start_soon(trio.to_thread.run_sync, create_on_two)
            await trio.sleep(0.2)
            one.execute("COMMIT")
        assert len(second) == 1
        assert isinstance(second[0], UserExists), repr(second[0])
        assert [u.username for u in list_users(two)] == ["vera"]
    finally:
        one.close()
        two.close()


async def test_two_gateways_writing_the_same_hours_rollup_rows_never_deadlock(
    postgres_url: str,
) -> None:
    # Every writer updates the rollup rows a batch touches inside its transaction. Two writers
    # that lock the same rows in different orders deadlock: PostgreSQL aborts one batch after
    # deadlock_timeout, an error and a retry. Taken in key order, one simply waits its turn.
    first_key = make_record(1, model="a-model")
    second_key = make_record(2, model="b-model")
    one, two = connect(postgres_url), connect(postgres_url)
    try:
        write_batch(two, [make_record(0, model="a-model"), make_record(0, model="b-model")])
        # The first writer, mid-batch: its transaction holds the first key's row.
        one.execute(begin_statement(one))
        one.executemany(UPSERT_USAGE_HOURLY, UsageRollup([first_key]).rows())
        errors: list[BaseException] = []

        def second_writer() -> None:
            try:  # this batch met its keys the other way round
                write_batch(two, [make_record(3, model="b-model"), make_record(4, model="a-model")])
            except BaseException as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, second_writer)
            await trio.sleep(0.3)  # the second writer is waiting for a row the first holds
            try:
                one.executemany(UPSERT_USAGE_HOURLY, UsageRollup([second_key]).rows())
                one.execute("COMMIT")
            except BaseException as exc:
                errors.append(exc)
                rollback_quietly(one)
        assert errors == []
        totals = one.execute("SELECT model, requests FROM usage_hourly ORDER BY model").fetchall()
        assert [tuple(row) for row in totals] == [("a-model", 3), ("b-model", 3)]
    finally:
        one.close()
        two.close()


async def test_two_gateways_recording_key_use_never_deadlock(postgres_url: str) -> None:
    # Each gateway writes when its keys were last used, several keys in one transaction; two
    # that update the same keys in different orders deadlocked as the rollup did.
    one, two = connect(postgres_url), connect(postgres_url)
    try:
        client, first, _ = create_client(one, name="shared", now_ms=1_000)
        second, _ = add_key(one, client.id, now_ms=1_000)
        one.execute(begin_statement(one))
        record_key_use(one, {first.id: 2_000})
        errors: list[BaseException] = []

        def second_gateway() -> None:
            try:  # it saw the keys the other way round
                in_immediate_transaction(
                    two, lambda conn: record_key_use(conn, {second.id: 3_000, first.id: 3_000})
                )
            except BaseException as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, second_gateway)
            await trio.sleep(0.3)  # the second is waiting for a row the first holds
            try:
                record_key_use(one, {second.id: 2_000})
                one.execute("COMMIT")
            except BaseException as exc:
                errors.append(exc)
                rollback_quietly(one)
        assert errors == []
        assert [key.last_used_at for key in list_keys(one, client.id)] == [3_000, 3_000]
    finally:
        one.close()
        two.close()


async def test_two_admins_removed_at_once_on_two_gateways_leave_one_admin(
    postgres_url: str,
) -> None:
    # The last-admin rule counts admins, then deletes: on PostgreSQL two gateways' transactions
    # could each count two admins and each delete one, leaving none (nobody could sign in to
    # fix it). The second must see the first's deletion and be refused.
    one, two = connect(postgres_url), connect(postgres_url)
    try:
        for name in ("alice", "bob"):
            create_user(one, username=name, password_hash=HASH, role="admin", now_ms=1_000)
        one.execute(begin_statement(one))
        delete_user(one, "bob")
        refused: list[BaseException] = []

        def second_gateway() -> None:
            try:
                in_immediate_transaction(two, lambda conn: delete_user(conn, "alice"))
            except ValueError as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, second_gateway)
            await trio.sleep(0.3)
            one.execute("COMMIT")
        assert [str(exc) for exc in refused] == [
            "username: 'alice' is the last admin and cannot be deleted"
        ]
        assert [user.username for user in list_users(one)] == ["alice"]
    finally:
        one.close()
        two.close()
