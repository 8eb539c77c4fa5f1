"""Provider and model overrides, settings and the audit log in SQLite."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import pytest

from storage import UNCHANGED, auth_generation, create_client
from storage.audit import AuditRow, list_audit, record_audit
from storage.model_settings import (
    ModelSettingsRow,
    delete_model_settings,
    get_model_settings,
    list_model_settings,
    put_model_settings,
)
from storage.provider_settings import (
    ProviderSettingsRow,
    debit_credit,
    get_provider_settings,
    list_provider_settings,
    put_provider_settings,
)
from storage.settings_store import INTERNAL_KEYS, get_settings, put_settings
from storage.sql import Connection
from storage.transaction import in_immediate_transaction
from tests.storage_backends import connect, writer_on
from tests.storage_backends import reader as open_reader

T = TypeVar("T")

NOW = 1_700_000_000_000


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


def put_provider(conn: Connection, provider: str, **kwargs: object) -> ProviderSettingsRow:
    kwargs.setdefault("now_ms", NOW)
    return write(conn, partial(put_provider_settings, provider=provider, **kwargs))  # type: ignore[arg-type]


def put_model(conn: Connection, model: str, **kwargs: object) -> ModelSettingsRow:
    kwargs.setdefault("now_ms", NOW)
    return write(conn, partial(put_model_settings, model=model, **kwargs))  # type: ignore[arg-type]


# --- provider settings ----------------------------------------------------------------------------


def test_provider_settings_upsert_only_the_fields_given(conn: Connection) -> None:
    assert get_provider_settings(conn, "openai") is None
    assert list_provider_settings(conn) == []
    row = put_provider(conn, "openai", enabled=False, max_concurrency=8)
    assert row == ProviderSettingsRow(
        provider="openai",
        enabled=False,
        base_url=None,
        default_model=None,
        max_concurrency=8,
        credit_balance_usd=None,
        low_credit_threshold_usd=None,
        updated_at=NOW,
    )
    row = put_provider(
        conn,
        "openai",
        base_url="https://proxy.example.com:8443/v1",
        default_model="gpt-4o-mini",
        credit_balance_usd=25,
        low_credit_threshold_usd=5.5,
        enabled=UNCHANGED,
        now_ms=NOW + 1,
    )
    assert row.enabled is False  # kept
    assert row.max_concurrency == 8  # kept
    assert row.base_url == "https://proxy.example.com:8443/v1"
    assert row.default_model == "gpt-4o-mini"
    assert row.credit_balance_usd == 25.0
    assert isinstance(row.credit_balance_usd, float)
    assert row.low_credit_threshold_usd == 5.5
    assert row.updated_at == NOW + 1
    assert get_provider_settings(conn, "openai") == row
    # None: back to the file config.
    row = put_provider(conn, "openai", enabled=None, base_url=None, now_ms=NOW + 2)
    assert (row.enabled, row.base_url, row.max_concurrency) == (None, None, 8)
    # Nothing given: an existing row stays as it is.
    assert put_provider(conn, "openai", now_ms=NOW + 3) == row
    empty = put_provider(conn, "gemini", now_ms=NOW + 4)
    assert (empty.enabled, empty.base_url, empty.updated_at) == (None, None, NOW + 4)
    assert [r.provider for r in list_provider_settings(conn)] == ["gemini", "openai"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_url": "ftp://example.com"}, "base_url must start with http:// or https://"),
        ({"base_url": "example.com/v1"}, "base_url must start with http"),
        ({"base_url": "https://"}, "base_url must name a host"),
        ({"base_url": "https:///v1"}, "base_url must name a host"),
        ({"base_url": "https://user:pw@example.com"}, "must not contain a user name or password"),
        ({"base_url": "https://user@example.com"}, "must not contain a user name"),
        ({"base_url": "https://example.com:99999"}, "base_url is not a valid URL"),
        ({"base_url": "https://exa mple.com"}, "base_url must not contain spaces"),
        ({"base_url": "https://example.com/\n"}, "base_url must not contain spaces"),
        ({"base_url": "https://example.com/" + "a" * 2000}, "at most 2000"),
        ({"base_url": 5}, "base_url must be text"),
        ({"max_concurrency": 0}, "max_concurrency must be between 1 and 10000"),
        ({"max_concurrency": 10_001}, "max_concurrency must be between 1 and 10000"),
        ({"max_concurrency": 2.5}, "max_concurrency must be a whole number"),
        ({"max_concurrency": True}, "max_concurrency must be a whole number"),
        ({"low_credit_threshold_usd": -0.01}, "low_credit_threshold_usd must be at least 0"),
        ({"low_credit_threshold_usd": math.inf}, "low_credit_threshold_usd must be a finite"),
        ({"credit_balance_usd": math.nan}, "credit_balance_usd must be a finite"),
        ({"credit_balance_usd": -math.inf}, "credit_balance_usd must be a finite"),
        ({"credit_balance_usd": "10"}, "credit_balance_usd must be a number"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"default_model": ""}, "default_model must be 1 to 200"),
        ({"default_model": "gpt\x00"}, "default_model must not contain control"),
    ],
)
def test_provider_settings_validate(
    conn: Connection, kwargs: dict[str, object], message: str
) -> None:
    put_provider(conn, "openai", max_concurrency=4)
    before = get_provider_settings(conn, "openai")
    with pytest.raises(ValueError, match=re.escape(message)):
        put_provider(conn, "openai", now_ms=NOW + 1, **kwargs)
    assert get_provider_settings(conn, "openai") == before


def test_provider_name_is_validated(conn: Connection) -> None:
    with pytest.raises(ValueError, match="provider must be 1 to 200"):
        put_provider(conn, "")
    assert list_provider_settings(conn) == []


def test_provider_settings_accept_edge_values(conn: Connection) -> None:
    row = put_provider(
        conn,
        "ollama",
        base_url="http://[::1]:11434",
        max_concurrency=10_000,
        low_credit_threshold_usd=0,
        credit_balance_usd=-3,  # already overdrawn is a real state
    )
    assert row.base_url == "http://[::1]:11434"
    assert row.max_concurrency == 10_000
    assert (row.low_credit_threshold_usd, row.credit_balance_usd) == (0.0, -3.0)
    assert put_provider(conn, "ollama", max_concurrency=1).max_concurrency == 1


def test_debit_credit_warns_once_when_crossing_the_threshold(conn: Connection) -> None:
    put_provider(conn, "openai", credit_balance_usd=10.0, low_credit_threshold_usd=5.0)
    put_provider(conn, "gemini", credit_balance_usd=1.0)  # no threshold: warn when running out
    put_provider(conn, "deepseek", enabled=True)  # no balance tracked
    debit = partial(debit_credit, now_ms=NOW + 10)

    assert write(conn, partial(debit, charges={"openai": 4.0, "gemini": 0.5})) == []
    row = get_provider_settings(conn, "openai")
    assert row is not None
    assert row.credit_balance_usd == pytest.approx(6.0)
    assert row.updated_at == NOW + 10
    # Exactly at the threshold is not below it.
    assert write(conn, partial(debit, charges={"openai": 1.0})) == []
    crossed = write(conn, partial(debit, charges={"openai": 0.25, "deepseek": 3.0, "x": 1.0}))
    assert crossed == [("openai", pytest.approx(4.75), 5.0)]
    # Already below: no second warning.
    assert write(conn, partial(debit, charges={"openai": 1.0})) == []
    assert write(conn, partial(debit, charges={"openai": 10.0})) == []
    row = get_provider_settings(conn, "openai")
    assert row is not None
    assert row.credit_balance_usd == pytest.approx(-6.25)
    # The balance stays untracked where none is set, and unknown providers are skipped.
    deepseek = get_provider_settings(conn, "deepseek")
    assert deepseek is not None
    assert deepseek.credit_balance_usd is None
    assert get_provider_settings(conn, "x") is None
    # Without a threshold the line is zero, reported as threshold None.
    assert write(conn, partial(debit, charges={"gemini": 0.5})) == []
    assert write(conn, partial(debit, charges={"gemini": 0.01})) == [
        ("gemini", pytest.approx(-0.01), None)
    ]
    # Topping up re-arms the warning.
    put_provider(conn, "openai", credit_balance_usd=5.1)
    assert write(conn, partial(debit, charges={"openai": 0.2})) == [
        ("openai", pytest.approx(4.9), 5.0)
    ]


def test_debit_credit_ignores_charges_that_are_not_positive_numbers(
    conn: Connection,
) -> None:
    put_provider(conn, "openai", credit_balance_usd=1.0, low_credit_threshold_usd=0.5)
    for cost in (0.0, -2.0, math.nan, math.inf, True):
        assert write(conn, partial(debit_credit, charges={"openai": cost}, now_ms=NOW)) == []
    assert write(conn, partial(debit_credit, charges={}, now_ms=NOW)) == []
    row = get_provider_settings(conn, "openai")
    assert row is not None
    assert row.credit_balance_usd == 1.0


# --- model settings -------------------------------------------------------------------------------


def test_model_settings_upsert_and_delete(conn: Connection) -> None:
    assert get_model_settings(conn, "fast") is None
    row = put_model(conn, "fast", provider="openai", upstream_model="gpt-4o-mini")
    assert row == ModelSettingsRow(
        model="fast",
        provider="openai",
        upstream_model="gpt-4o-mini",
        enabled=True,
        input_per_mtok=None,
        output_per_mtok=None,
        cached_input_per_mtok=None,
        updated_at=NOW,
    )
    row = put_model(
        conn,
        "fast",
        enabled=False,
        input_per_mtok=0.15,
        output_per_mtok=0.6,
        cached_input_per_mtok=0,
        provider=UNCHANGED,
        now_ms=NOW + 1,
    )
    assert (row.provider, row.upstream_model, row.enabled) == ("openai", "gpt-4o-mini", False)
    assert (row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok) == (0.15, 0.6, 0.0)
    assert row.updated_at == NOW + 1
    assert get_model_settings(conn, "fast") == row
    row = put_model(conn, "fast", provider=None, input_per_mtok=None, now_ms=NOW + 2)
    assert (row.provider, row.input_per_mtok, row.output_per_mtok) == (None, None, 0.6)
    assert put_model(conn, "fast", now_ms=NOW + 3) == row  # nothing given, nothing changes
    put_model(conn, "another", output_per_mtok=1_000_000)
    assert [r.model for r in list_model_settings(conn)] == ["another", "fast"]
    write(conn, partial(delete_model_settings, model="fast"))
    assert get_model_settings(conn, "fast") is None
    with pytest.raises(LookupError, match="unknown model settings: fast"):
        write(conn, partial(delete_model_settings, model="fast"))
    assert [r.model for r in list_model_settings(conn)] == ["another"]


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("", {}, "model must be 1 to 200"),
        ("m" * 201, {}, "model must be 1 to 200"),
        (" padded", {}, "model must not start or end with spaces"),
        ("two\nlines", {}, "model must not contain control"),
        ("ok", {"input_per_mtok": -1}, "input_per_mtok must be between 0 and 1e+06"),
        ("ok", {"output_per_mtok": 1e6 + 1}, "output_per_mtok must be between 0 and 1e+06"),
        ("ok", {"cached_input_per_mtok": math.nan}, "cached_input_per_mtok must be a finite"),
        ("ok", {"input_per_mtok": math.inf}, "input_per_mtok must be a finite"),
        ("ok", {"input_per_mtok": "1"}, "input_per_mtok must be a number"),
        ("ok", {"enabled": None}, "enabled must be true or false"),
        ("ok", {"enabled": 1}, "enabled must be true or false"),
        ("ok", {"provider": ""}, "provider must be 1 to 200"),
        ("ok", {"upstream_model": "x" * 201}, "upstream_model must be 1 to 200"),
    ],
)
def test_model_settings_validate(
    conn: Connection, model: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        put_model(conn, model, **kwargs)
    assert list_model_settings(conn) == []


# --- settings -------------------------------------------------------------------------------------


def test_settings_round_trip_json(conn: Connection) -> None:
    assert get_settings(conn) == {}
    values = {
        "logging.retention_days": 30,
        "dashboard.title": "Team gateway ✓",
        "limits.default_client_requests_per_minute": None,
        "feature.flags": {"a": [1, 2.5, True], "b": {"nested": "x"}},
    }
    assert write(conn, partial(put_settings, values=values, now_ms=NOW)) == values
    assert get_settings(conn) == values
    after = write(conn, partial(put_settings, values={"logging.retention_days": 7}, now_ms=NOW))
    assert after["logging.retention_days"] == 7
    assert len(after) == 4
    assert write(conn, partial(put_settings, values={}, now_ms=NOW)) == after
    (updated_at,) = conn.execute(
        "SELECT updated_at FROM settings WHERE key = 'logging.retention_days'"
    ).fetchall()[0]
    assert updated_at == NOW


def test_internal_keys_are_neither_listed_nor_writable(conn: Connection) -> None:
    assert "auth_generation" in INTERNAL_KEYS
    write(conn, partial(create_client, name="bumps the counter", now_ms=NOW))
    generation = auth_generation(conn)
    assert generation > 0
    write(conn, partial(put_settings, values={"a": 1}, now_ms=NOW))
    assert get_settings(conn) == {"a": 1}
    with pytest.raises(ValueError, match="'auth_generation' is internal"):
        write(conn, partial(put_settings, values={"a": 2, "auth_generation": 0}, now_ms=NOW))
    assert auth_generation(conn) == generation
    assert get_settings(conn) == {"a": 1}  # nothing of the refused call was written


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"": 1}, "must be 1 to 100 characters"),
        ({"k" * 101: 1}, "must be 1 to 100 characters"),
        ({"Upper": 1}, "of a-z, 0-9, _ and ."),
        ({"with-dash": 1}, "of a-z, 0-9, _ and ."),
        ({"spa ce": 1}, "of a-z, 0-9, _ and ."),
        ({"ok": math.nan}, "settings value for 'ok' is not JSON-serialisable"),
        ({"ok": {1, 2}}, "settings value for 'ok' is not JSON-serialisable"),
        ({"ok": object()}, "is not JSON-serialisable"),
        ({"ok": b"bytes"}, "is not JSON-serialisable"),
        ({"fine": 1, "bad": {"x": math.inf}}, "settings value for 'bad'"),
    ],
)
def test_put_settings_validates(conn: Connection, values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write(conn, partial(put_settings, values=values, now_ms=NOW))
    assert get_settings(conn) == {}


def test_put_settings_refuses_a_cycle(conn: Connection) -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        write(conn, partial(put_settings, values={"loop": cyclic}, now_ms=NOW))


# --- audit log ------------------------------------------------------------------------------------


def test_record_and_list_audit_newest_first(conn: Connection) -> None:
    assert list_audit(conn) == []
    write(
        conn,
        partial(
            record_audit,
            username="root",
            action="user.create",
            target="bob",
            detail={"role": "viewer", "reset_password": True, "token_id": 3},
            now_ms=NOW,
        ),
    )
    write(conn, partial(record_audit, username="root", action="settings.update", now_ms=NOW + 1))
    write(
        conn,
        partial(
            record_audit,
            username="bob",
            action="client.create",
            target="cl_1",
            detail={"changes": [{"max_tokens": 5, "key_name": "laptop"}]},
            now_ms=NOW + 2,
        ),
    )
    rows = list_audit(conn)
    assert [r.action for r in rows] == ["client.create", "settings.update", "user.create"]
    oldest = rows[-1]
    assert oldest == AuditRow(
        id=oldest.id,
        ts_ms=NOW,
        username="root",
        action="user.create",
        target="bob",
        detail={"role": "viewer", "reset_password": True, "token_id": 3},
    )
    assert rows[1].target == ""
    assert rows[1].detail == {}
    assert rows[0].detail == {"changes": [{"max_tokens": 5, "key_name": "laptop"}]}
    # Paging: before_id continues from the last entry seen.
    first_page = list_audit(conn, limit=2)
    assert first_page == rows[:2]
    assert list_audit(conn, limit=2, before_id=first_page[-1].id) == rows[2:]
    assert list_audit(conn, before_id=oldest.id) == []


@pytest.mark.parametrize(
    "detail",
    [
        {"password": "hunter2"},
        {"Password": "hunter2"},
        {"password_hash": "$argon2id$..."},
        {"passwordHash": "$argon2id$..."},
        {"token": "sk-abc"},
        {"TOKEN": None},  # an exact secret name is refused whatever its value
        {"api_key": "sk-abc"},
        {"apiKey": "sk-abc"},
        {"API-Key": "sk-abc"},
        {"key": "sk-abc"},
        {"secret": 1},
        {"new_password": "hunter2"},
        {"current_password": "hunter2"},
        {"session_token": "abc"},
        {"x-api-key": "abc"},
        {"clientSecret": "abc"},
        {"user": {"name": "bob", "password": "hunter2"}},
        {"changes": [{"ok": 1}, {"deeper": [{"api_key": "sk-abc"}]}]},
        {"new": {"tokens": {"token": "sk-abc"}}},
        {"tuple": ({"secret": "s"},)},
    ],
)
def test_record_audit_refuses_secrets_at_any_depth(
    conn: Connection, detail: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="must not contain secrets"):
        write(
            conn,
            partial(record_audit, username="root", action="x.y", detail=detail, now_ms=NOW),
        )
    assert list_audit(conn) == []


@pytest.mark.parametrize(
    "detail",
    [
        {"reset_password": True},  # a flag under a secret-sounding name carries no secret
        {"token_id": 7},
        {"key_name": "laptop"},
        {"keys": 2},
        {"max_tokens": 100},
        {"prompt_tokens": 1},
        {"monkey": "banana"},
        {"api_key_env": "OPENAI_API_KEY"},
        {"other_sessions_ended": 2},
    ],
)
def test_record_audit_allows_names_that_only_sound_like_secrets(
    conn: Connection, detail: dict[str, object]
) -> None:
    write(conn, partial(record_audit, username="root", action="x.y", detail=detail, now_ms=NOW))
    assert list_audit(conn)[0].detail == detail


def test_record_audit_validates(conn: Connection) -> None:
    record = partial(record_audit, username="root", now_ms=NOW)
    with pytest.raises(ValueError, match="action must not be empty"):
        write(conn, partial(record, action=""))
    with pytest.raises(ValueError, match="action must be at most 100"):
        write(conn, partial(record, action="a" * 101))
    with pytest.raises(ValueError, match="detail is not JSON-serialisable"):
        write(conn, partial(record, action="x", detail={"when": object()}))
    with pytest.raises(ValueError, match="detail is not JSON-serialisable"):
        write(conn, partial(record, action="x", detail={"n": math.nan}))
    with pytest.raises(ValueError, match="detail must be a mapping"):
        write(conn, partial(record, action="x", detail=[("a", 1)]))
    with pytest.raises(ValueError, match="limit must be a whole number from 1 to 1000"):
        list_audit(conn, limit=0)
    with pytest.raises(ValueError, match="limit must be"):
        list_audit(conn, limit=1001)
    with pytest.raises(ValueError, match="before_id must be a whole number"):
        list_audit(conn, before_id="5")  # type: ignore[arg-type]
    assert list_audit(conn) == []


# --- through the writer, as the server does -------------------------------------------------------


async def test_settings_through_the_storage_writer(db: str) -> None:
    async with writer_on(db) as writer:
        await writer.execute(
            partial(
                put_provider_settings,
                provider="openai",
                credit_balance_usd=1.0,
                low_credit_threshold_usd=0.5,
                now_ms=NOW,
            )
        )
        crossed = await writer.execute(
            partial(debit_credit, charges={"openai": 0.75}, now_ms=NOW + 1)
        )
        await writer.execute(partial(put_model_settings, model="m", enabled=False, now_ms=NOW))
        await writer.execute(partial(put_settings, values={"a.b": [1]}, now_ms=NOW))
        with pytest.raises(ValueError, match="secrets"):
            await writer.execute(
                partial(record_audit, username="u", action="a", detail={"key": "k"}, now_ms=NOW)
            )
        await writer.execute(partial(record_audit, username="u", action="a", now_ms=NOW))
    assert crossed == [("openai", 0.25, 0.5)]
    reader = open_reader(db)
    try:
        model = get_model_settings(reader, "m")
        assert model is not None
        assert model.enabled is False
        assert get_settings(reader) == {"a.b": [1]}
        assert [r.action for r in list_audit(reader)] == ["a"]
    finally:
        reader.close()
