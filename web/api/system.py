"""``/api/system`` and ``/api/settings``: health, recent log lines, backups, dashboard settings."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import trio
from quart import Blueprint, Response, request

from proxy import __version__
from proxy.config import AuthConfig, Config, StorageConfig, mask_secret
from proxy.errors import Conflict, InternalError, InvalidRequest
from storage.audit import SECRET_NAMES
from storage.backup import BackupError, BackupResult, backup_database, list_backups
from storage.postgres_backup import BackupUnavailable, dump_database
from storage.reads import ReadPool
from storage.settings_store import get_settings, put_settings
from storage.sql import DATABASE_ERRORS, Connection
from storage.writer import StorageWriter
from web.api.common import AuditLog, deps_of, json_response, now_ms, read_body
from web.fleet_report import cluster_json, instances_json, redis_json
from web.log_buffer import LogBuffer
from web.metrics import rss_bytes
from web.observed import ObservedParts

system = Blueprint("api_system", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class SystemApi:
    """What ``/api/system`` and ``/api/settings`` use."""

    config: Config  # shown (secrets masked) and the database's path
    observed: ObservedParts  # for health
    log_buffer: LogBuffer
    reads: ReadPool
    writer: StorageWriter
    audit: AuditLog


def _deps() -> SystemApi:
    return deps_of(SystemApi)


DEFAULT_LOG_LINES: Final = 200
MAX_LOG_LINES: Final = 1000
_SECTIONS: Final = ("server", "auth", "dashboard", "limits", "logging", "images")
_SEPARATORS = re.compile(r"[\s.\-]+")


# -- health ----------------------------------------------------------------------------------------


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0  # no WAL file between a checkpoint that truncated it and the next write


def _process_and_files(database: str) -> dict[str, Any]:
    """Worker thread: the numbers that come from the file system."""
    return {
        "rss_bytes": rss_bytes(),
        "database": {
            "path": database,
            "size_bytes": _size(database),
            "wal_bytes": _size(database + "-wal"),
        },
    }


def _database_size(conn: Connection) -> int:
    """Read pool: the PostgreSQL database's size on the server's disk."""
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


async def _database_json(deps: SystemApi) -> dict[str, Any]:
    """The database section of health: where, how big, and whether it takes writes."""
    database = deps.writer.database
    answer: dict[str, Any]
    if database.dialect == "postgresql":
        size: int | None = None
        with contextlib.suppress(*DATABASE_ERRORS):  # down: the writer's figures say so
            size = await deps.reads.run(_database_size)
        answer = {"url": database.describe(), "size_bytes": size}
    else:
        files = await trio.to_thread.run_sync(_process_and_files, deps.config.server.database)
        answer = files["database"]
    writer = deps.writer.statistics()
    down_since = writer.down_since
    return {
        "backend": database.dialect,
        **answer,
        "up": writer.up,
        "down_since_ms": None if down_since is None else int(down_since * 1000),
        "buffered": writer.buffered,
        "buffer_bound": writer.buffer_bound,
        "records_dropped": writer.records_dropped,
    }


@system.get("/system/health")
async def health() -> Response:
    deps = _deps()
    parts = deps.observed
    files: dict[str, Any] = {"rss_bytes": await trio.to_thread.run_sync(rss_bytes)}
    files["database"] = await _database_json(deps)
    uptime_s = time.monotonic() - parts.started_at
    readiness = parts.readiness
    answer = {
        "status": "draining" if readiness.draining else "ok" if readiness.ready else "starting",
        "version": __version__,
        "pid": os.getpid(),
        "uptime_s": round(uptime_s, 3),
        "started_at_ms": now_ms() - int(uptime_s * 1000),
        **files,
        "in_flight": parts.in_flight.count,
        # Frozen dataclasses of plain numbers and strings: msgspec encodes them as objects.
        "actors": {
            "writer": parts.writer.statistics(),
            "logger": parts.logger.statistics(),
            "limiter": parts.limiter.statistics(),
            "directory": parts.directory.statistics(),
            "sessions": parts.sessions.statistics(),
            "events": parts.events.statistics(),
            "retention": parts.retention.statistics(),
        },
        "providers": {name: actor.statistics() for name, actor in parts.providers.items()},
        "images": parts.images.statistics(),
        "instance": parts.instance,
        # None without Redis; else up, down_since_ms and the policy while down (degraded).
        "redis": redis_json(parts.redis),
        "instances": instances_json(parts),
        "fleet_feed": None if parts.fleet_feed is None else parts.fleet_feed.statistics(),
    }
    return json_response(answer)


@system.get("/system/cluster")
async def cluster() -> Response:
    """Cheap enough for every page's banner: this instance's name and its Redis."""
    return json_response(cluster_json(_deps().observed))


# -- recent log lines ------------------------------------------------------------------------------


@system.get("/system/logs")
async def logs() -> Response:
    raw = request.args.get("limit", "")
    limit = DEFAULT_LOG_LINES
    if raw:
        limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 4 else 0
        if not 1 <= limit <= MAX_LOG_LINES:
            raise InvalidRequest(
                f"limit must be a whole number from 1 to {MAX_LOG_LINES}, got {raw[:20]!r}."
            )
    # Our own log lines, which by project rule never carry a secret.
    return json_response({"data": _deps().log_buffer.recent(limit)})


# -- backups ---------------------------------------------------------------------------------------


def _backup_json(backup: BackupResult) -> dict[str, object]:
    return {
        "path": backup.path,
        "size_bytes": backup.size_bytes,
        "created_at": backup.created_at_ms,
    }


def _database_to_back_up() -> str:
    database = _deps().config.server.database
    if not database or database == ":memory:":
        raise Conflict("The database is in memory: there is no file to back up.")
    return database


async def _dump_postgres(storage: StorageConfig, database: str) -> BackupResult:
    """pg_dump of the PostgreSQL database into the backups beside ``database``; 409 without
    pg_dump (its backups are the database's own job then)."""
    try:
        # A subprocess, waited for on a worker thread; the read pool's connections stay free.
        return await trio.to_thread.run_sync(
            partial(dump_database, storage.url, database, now_ms=now_ms(), pg_dump=storage.pg_dump)
        )
    except BackupUnavailable as exc:
        raise Conflict(
            f"{str(exc)[:1].upper()}{str(exc)[1:]}.", code="backup_unavailable"
        ) from None


@system.post("/system/backup")
async def backup() -> Response:
    database = _database_to_back_up()
    storage = _deps().config.storage
    try:
        if storage.url:
            result = await _dump_postgres(storage, database)
        else:
            # VACUUM INTO must run outside a transaction, which rules out the writer; it only
            # reads, and in WAL mode a read connection copies a consistent snapshot while writes
            # go on.
            result = await _deps().reads.run(
                partial(backup_database, database_path=database, now_ms=now_ms())
            )
    except (BackupError, OSError) as exc:
        raise InternalError(f"The backup failed: {exc}", code="backup_failed") from None
    await _deps().audit.record("system.backup", result.path, {"size_bytes": result.size_bytes})
    return json_response(_backup_json(result), 201)


@system.get("/system/backups")
async def backups() -> Response:
    database = _database_to_back_up()
    found = await trio.to_thread.run_sync(list_backups, database)
    return json_response({"data": [_backup_json(entry) for entry in found]})


# -- settings --------------------------------------------------------------------------------------


def _secret_name(name: str) -> bool:
    """Whether a setting's name says it holds a secret (``openai.api_key``, ``smtp_password``)."""
    normal = _SEPARATORS.sub("_", name).lower().strip("_")
    return any(normal == secret or normal.endswith("_" + secret) for secret in SECRET_NAMES)


def _mask_url(url: str) -> str:
    """``url`` without a password in it or in its query string."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "…@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "…" if _secret_name(k) else v) for k, v in pairs], safe="…")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _fields(obj: Any, *skip: str) -> dict[str, object]:
    return {
        field.name: getattr(obj, field.name)
        for field in dataclasses.fields(obj)
        if field.name not in skip
    }


def config_json(config: Config) -> dict[str, object]:
    """The effective configuration as JSON values, every secret masked (``sk-…abcd``)."""
    answer: dict[str, object] = {"source": config.source}
    for name in _SECTIONS:
        section = getattr(config, name)
        if isinstance(section, AuthConfig):
            section = dataclasses.replace(section, tokens=tuple(map(mask_secret, section.tokens)))
        answer[name] = _fields(section)
    # [providers]' own keys beside its NAME tables, as in the file.
    providers: dict[str, object] = _fields(config.provider_wide)
    for name, provider in config.providers.items():
        shown = _fields(provider, "api_key")
        shown["base_url"] = _mask_url(provider.base_url)
        shown["api_key"] = None if provider.api_key is None else mask_secret(provider.api_key)
        providers[name] = shown
    answer["providers"] = providers
    answer["models"] = {name: _fields(alias) for name, alias in config.models.items()}
    answer["fallbacks"] = dict(config.fallbacks)
    # The Redis URL may carry a password (user info or query): shown as host, port and database.
    cluster = config.cluster
    answer["cluster"] = {
        **_fields(cluster, "redis_url"),
        "redis_url": _mask_url(cluster.redis_url) if cluster.redis_url else "",
    }
    storage = config.storage
    answer["storage"] = {
        **_fields(storage, "url"),
        "url": _mask_url(storage.url) if storage.url else "",
        "backend": "postgresql" if storage.url else "sqlite",
    }
    return answer


def _settings_json(settings: Mapping[str, object]) -> dict[str, object]:
    # Refused on the way in; masked here too in case the CLI or an old version stored one.
    return {
        key: mask_secret(str(value)) if _secret_name(key) and value is not None else value
        for key, value in settings.items()
    }


@system.get("/settings")
async def settings() -> Response:
    gw = _deps()
    stored = await gw.reads.run(get_settings)
    return json_response({"settings": _settings_json(stored), "config": config_json(gw.config)})


@system.put("/settings")
async def change_settings() -> Response:
    values = await read_body(dict[str, Any])
    secret = sorted(key for key in values if _secret_name(key))
    if secret:
        raise InvalidRequest(
            f"Settings are stored in plain text, so a secret does not belong there: {secret[0]!r}"
            " is named like one. Provider keys come from the config file, the environment or a "
            "systemd credential.",
        )
    gw = _deps()
    try:
        stored = await gw.writer.execute(partial(put_settings, values=values, now_ms=now_ms()))
    except ValueError as exc:
        raise InvalidRequest(f"Invalid setting: {exc}.") from None
    if values:
        await _deps().audit.record("settings.update", "", {"keys": sorted(values)})
    return json_response({"settings": _settings_json(stored)})
