"""A fresh database per test on a module's PostgreSQL cluster: cheaper than a cluster per test,
and as isolated for schema work (tables, functions and advisory locks are per database)."""

from __future__ import annotations

import itertools
from typing import Final

import psycopg

from tests.postgres_server import PostgresServer

__all__ = ["fresh_database"]

_numbers: Final = itertools.count(1)


def fresh_database(server: PostgresServer, prefix: str = "test") -> str:
    """Create an empty database on ``server``; its URL (with the password)."""
    name = f"{prefix}_{next(_numbers)}"
    with psycopg.connect(server.url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {name}".encode())
    return f"{server.url.rsplit('/', 1)[0]}/{name}"
