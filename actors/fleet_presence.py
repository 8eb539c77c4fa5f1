"""FleetPresence: each instance heartbeats a record of itself into Redis, and reads the others'.

Every ``heartbeat_s`` an instance writes ``llm-proxy:instance:<name>`` (expiring after
``ttl_s``) and its name into the ``llm-proxy:instances`` index, and reads every indexed record in
the same two round trips. An instance that stops gracefully deletes its record at once; one that
crashes disappears when its record expires (and its name is pruned from the index by the next
heartbeat of anyone). The list is kept from the last heartbeat, so the health page and
``/metrics`` never wait for Redis; while Redis is down this instance knows only itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Final

import coredis.exceptions
import msgspec
import trio

from actors.redis_link import KEY_PREFIX, Client, RedisDown, RedisLink

__all__ = [
    "INSTANCES_KEY",
    "FleetPresence",
    "FleetPresenceStatistics",
    "InstanceInfo",
    "LiveFigures",
    "instance_key",
]

log = logging.getLogger("llm_proxy.fleet_presence")

INSTANCES_KEY: Final = KEY_PREFIX + "instances"
HEARTBEAT_S: Final = 2.0
TTL_S: Final = 10
# How long the goodbye at shutdown may take before the record is left to expire.
GOODBYE_S: Final = 1.0


def instance_key(name: str) -> str:
    """Where an instance's record lives."""
    return f"{KEY_PREFIX}instance:{name}"


class InstanceInfo(msgspec.Struct, frozen=True):
    """What an instance says about itself in each heartbeat."""

    name: str
    host: str
    pid: int
    started_ms: int
    version: str
    on_redis_down: str  # "local" | "refuse"
    redis_outages: int  # outages this instance has seen since it started
    in_flight: int  # model calls being answered at the heartbeat (web/in_flight.py)
    seen_ms: int  # wall clock of the heartbeat
    # The dashboard's live tiles, summed over the fleet: calls and errors in the last minute,
    # model calls in flight (defaults: a record of an instance that does not send them).
    requests_per_min: int = 0
    errors_per_min: int = 0
    calls_in_flight: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LiveFigures:
    """What this instance adds to the fleet's live tiles."""

    requests_per_min: int
    errors_per_min: int
    calls_in_flight: int


@dataclasses.dataclass(frozen=True, slots=True)
class FleetPresenceStatistics:
    """For ``/metrics`` and the health page."""

    instances: int  # live instances at the last heartbeat (this one included)
    heartbeats: int
    failed_heartbeats: int


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(InstanceInfo).decode


class FleetPresence:
    """This instance's heartbeat, and the fleet as the last heartbeat saw it."""

    def __init__(
        self,
        link: RedisLink,
        *,
        started_ms: int,
        version: str,
        in_flight: Callable[[], int],
        live_figures: Callable[[], LiveFigures] | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        ttl_s: int = TTL_S,
        host: str | None = None,
    ) -> None:
        self._link = link
        self._started_ms = started_ms
        self._version = version
        self._in_flight = in_flight
        self._live_figures = live_figures
        self._heartbeat_s = heartbeat_s
        self._ttl_s = ttl_s
        self._host = host or socket.gethostname()
        self._known: tuple[InstanceInfo, ...] = ()
        self._beats = self._failed = 0
        self._closed = trio.Event()
        self._name_clash_said = False
        self._refusal_said = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat until :meth:`close`, then remove this instance's record."""
        task_status.started()
        while not self._closed.is_set():
            await self._heartbeat()
            with trio.move_on_after(self._heartbeat_s):
                await self._closed.wait()
        with trio.move_on_after(GOODBYE_S, shield=True):
            await self._goodbye()

    def close(self) -> None:
        """Stop heartbeating; :meth:`run` removes the record and returns."""
        self._closed.set()

    def describe(self) -> InstanceInfo:
        """This instance, now."""
        stats = self._link.statistics()
        live = self._live_figures() if self._live_figures is not None else LiveFigures(0, 0, 0)
        return InstanceInfo(
            name=self._link.instance,
            host=self._host,
            pid=os.getpid(),
            started_ms=self._started_ms,
            version=self._version,
            on_redis_down="refuse" if self._link.refuses else "local",
            redis_outages=stats.outages,
            in_flight=self._in_flight(),
            seen_ms=int(time.time() * 1000),
            requests_per_min=live.requests_per_min,
            errors_per_min=live.errors_per_min,
            calls_in_flight=live.calls_in_flight,
        )

    def instances(self) -> tuple[InstanceInfo, ...]:
        """The live instances by name, as of the last heartbeat (only this one while Redis is
        down: the others cannot be known)."""
        if self._link.up and self._known:
            return self._known
        return (self.describe(),)

    def others(self) -> tuple[InstanceInfo, ...]:
        """The other live instances, as of the last heartbeat (none while Redis is down)."""
        me = self._link.instance
        return tuple(info for info in self.instances() if info.name != me)

    def statistics(self) -> FleetPresenceStatistics:
        """Live instances and heartbeats so far."""
        return FleetPresenceStatistics(
            instances=len(self.instances()),
            heartbeats=self._beats,
            failed_heartbeats=self._failed,
        )

    async def _heartbeat(self) -> None:
        me = self.describe()
        record = _encode(me).decode()
        ttl = self._ttl_s

        async def beat(r: Client) -> tuple[str | None, tuple[str, ...]]:
            async with r.pipeline(transaction=False) as pipe:
                # What was there: this instance's last heartbeat, or another process's of the
                # same name written since.
                previous = pipe.get(instance_key(me.name))
                stored = pipe.set(instance_key(me.name), record, ex=ttl)
                indexed = pipe.zadd(INSTANCES_KEY, {me.name: me.seen_ms})
                names = pipe.zrange(INSTANCES_KEY, 0, -1)
            await stored
            await indexed
            return await previous, tuple(await names)

        try:
            previous, names = await self._link.call(beat)
            records = await self._link.call(lambda r: r.mget([instance_key(n) for n in names]))
            self._known = await self._read(names, records)
            self._check_name(me, previous)
        except RedisDown:
            self._failed += 1
            return
        except coredis.exceptions.RedisError as exc:
            # Redis answered with an error (a key of another type, a missing permission): the
            # heartbeat is skipped and the gateway serves on; said once until one succeeds.
            self._failed += 1
            if not self._refusal_said:
                self._refusal_said = True
                log.error("fleet: the heartbeat was refused by redis: %s", exc)
            return
        self._refusal_said = False
        self._beats += 1

    async def _read(
        self, names: Sequence[str], records: Sequence[str | None]
    ) -> tuple[InstanceInfo, ...]:
        live: list[InstanceInfo] = []
        gone: list[str] = []
        for name, record in zip(names, records, strict=True):
            if record is None:
                gone.append(name)
                continue
            try:
                live.append(_decode(record))
            except msgspec.DecodeError:
                log.warning("fleet: unreadable heartbeat of instance %r; ignored", name)
        if gone:
            await self._link.call(lambda r: r.zrem(INSTANCES_KEY, gone))
        return tuple(sorted(live, key=lambda info: info.name))

    def _check_name(self, me: InstanceInfo, previous: str | None) -> None:
        """Another process heartbeating under this name overwrites this one's record between
        two of ours: said once, as the feed and the instance list cannot tell the two apart."""
        if previous is None:
            return
        try:
            other = _decode(previous)
        except msgspec.DecodeError:
            return
        if (other.host, other.pid) == (me.host, me.pid):
            return
        if not self._name_clash_said:
            self._name_clash_said = True
            log.warning(
                "fleet: instance name %r is also used by pid %d on %s; give each process its own "
                "[cluster] instance_name",
                me.name,
                other.pid,
                other.host,
            )

    async def _goodbye(self) -> None:
        name = self._link.instance
        if not self._link.up:
            return

        async def remove(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                deleted = pipe.delete([instance_key(name)])
                unindexed = pipe.zrem(INSTANCES_KEY, [name])
            await deleted
            await unindexed

        # Else the record expires within its TTL.
        with contextlib.suppress(RedisDown, coredis.exceptions.RedisError):
            await self._link.call(remove)
