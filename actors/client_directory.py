"""ClientDirectory: the in-memory table of API keys that ``/v1`` authenticates against.

A key look-up is one dict probe on the trio thread; the table is reloaded whenever the database's
``auth_generation`` counter moves (triggers bump it on every client or key change, made by this
process or by the CLI in another), checked with one tiny read every ``poll_s``. In a fleet sharing
Redis the change bus (``actors/fleet_bus.py``) calls :meth:`ClientDirectory.refresh` when another
process announces a change, and ``poll_s`` is None: no process polls the database. Key use is
remembered in memory and written in one batch every ``flush_s``, never once per request.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import trio

from actors.rate_limiter import ClientLimits
from storage.client_names import every_client_name
from storage.clients import ActiveKey, active_keys, auth_generation, record_key_use
from storage.outage import is_unavailable
from storage.reads import ReadPool
from storage.writer import StorageWriter

log = logging.getLogger("llm_proxy.clients")


@dataclasses.dataclass(frozen=True, slots=True)
class KnownKey:
    """A valid key: whose it is, and the limits that apply to its client."""

    token_id: int
    client_id: str
    limits: ClientLimits


@dataclasses.dataclass(frozen=True, slots=True)
class DirectoryStatistics:
    """A snapshot for health and metrics."""

    keys: int
    generation: int
    reloads: int
    pending_key_uses: int


class ClientDirectory:
    """Serves key look-ups from memory; keeps itself in step with the database."""

    def __init__(
        self,
        reads: ReadPool,
        writer: StorageWriter,
        *,
        default_requests_per_minute: int,
        poll_s: float | None = 0.5,
        flush_s: float = 5.0,
    ) -> None:
        self._reads = reads
        self._writer = writer
        self._default_rpm = default_requests_per_minute
        self._poll_s = poll_s
        self._flush_s = flush_s
        self._keys: Mapping[str, KnownKey] = {}
        self._names: Mapping[str, str] = {}
        self._generation = -1
        self._reloads = 0
        self._used: dict[int, int] = {}
        self._closed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load the keys, report started, then follow changes until :meth:`close`."""
        await self._reload_if_changed()
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                if self._poll_s is not None:
                    nursery.start_soon(self._every, self._poll_s, self._reload_if_changed)
                nursery.start_soon(self._every, self._flush_s, self._flush_key_uses)
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(5, shield=True):
                try:
                    await self._flush_key_uses()
                except trio.ClosedResourceError:
                    # Only when the whole service was cancelled rather than stopped in order.
                    log.warning("client directory: %d key uses not recorded", len(self._used))

    def close(self) -> None:
        """Stop following changes; :meth:`run` writes pending key uses and returns."""
        self._closed.set()

    @property
    def key_count(self) -> int:
        """How many keys are valid now."""
        return len(self._keys)

    def lookup(self, digest: str) -> KnownKey | None:
        """The key with this SHA-256, if it is valid now (not revoked, client active)."""
        return self._keys.get(digest)

    def client_name(self, client_id: str | None) -> str | None:
        """The name of the client ``client_id`` as of the last reload; None for an anonymous
        call, a static key's client or a deleted client."""
        if client_id is None:
            return None
        return self._names.get(client_id)

    def key_used(self, token_id: int) -> None:
        """Remember that a key was used now; written with the next batch."""
        self._used[token_id] = int(time.time() * 1000)

    async def refresh(self) -> None:
        """Reload now: for changes this process just made and must see at once."""
        await self._reload_if_changed(force=True)

    def statistics(self) -> DirectoryStatistics:
        """Keys loaded, the generation they reflect, reloads, key uses not yet written."""
        return DirectoryStatistics(
            len(self._keys), self._generation, self._reloads, len(self._used)
        )

    async def _every(self, period_s: float, step: Callable[[], Awaitable[None]]) -> None:
        name = getattr(step, "__name__", step)
        unreachable = False
        while True:
            await trio.sleep(period_s)
            try:
                await step()
            except Exception as exc:
                # A locked or unreachable database must not stop authentication; the table in
                # memory stays valid until the next successful poll. An outage is said once (the
                # writer's log line says the rest), not at every poll while it lasts.
                if not is_unavailable(exc):
                    log.exception("client directory: %s failed", name)
                elif not unreachable:
                    unreachable = True
                    log.warning(
                        "client directory: database unavailable (%s); %d keys served from "
                        "memory until it answers",
                        exc,
                        len(self._keys),
                    )
                continue
            if unreachable:
                unreachable = False
                log.info("client directory: database answers again")

    async def _reload_if_changed(self, *, force: bool = False) -> None:
        generation = await self._reads.run(auth_generation)
        if generation == self._generation and not force:
            return
        keys = await self._reads.run(active_keys)
        # Every client's, not only those with a valid key: the feed names the calls of a client
        # deactivated a moment ago too. A rename moves the generation (storage.clients).
        names = await self._reads.run(every_client_name)
        self._keys = {key.token_sha256: self._known(key) for key in keys}
        self._names = names
        self._generation = generation
        self._reloads += 1
        log.debug("client directory: %d keys (generation %d)", len(keys), generation)

    def _known(self, key: ActiveKey) -> KnownKey:
        rpm = key.rate_limit_per_minute
        limits = ClientLimits(
            requests_per_minute=self._default_rpm if rpm is None else rpm,
            tokens_per_minute=key.tokens_per_minute or 0,
        )
        return KnownKey(key.token_id, key.client_id, limits)

    async def _flush_key_uses(self) -> None:
        if not self._used:
            return
        used, self._used = self._used, {}
        try:
            await self._writer.execute(lambda conn: record_key_use(conn, used))
        except BaseException:
            # Not written: keep them for the next flush (newer uses win).
            self._used = {**used, **self._used}
            raise
