"""FleetBudgetLedger: spend and reservations of every budget in Redis, shared by the fleet.

The :class:`actors.budget_keeper.BudgetKeeper` asks it to admit a call (check every budget the
call touches, reserve its estimate on all of them) and hands it settles. Admissions wait in a
bounded inbox; the actor's task sends everything queued by then, with the netted settles, as
one script call (:mod:`actors.fleet_budget_script`): one round trip per scheduling round. While
Redis is down :meth:`admit` answers None and the keeper decides from its own tallies (or
refuses, under ``on_redis_down = "refuse"``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Final

import coredis.exceptions
import trio

from actors.fleet_budget_script import FLEET_BUDGET_SCRIPT
from actors.redis_link import KEY_PREFIX, Client, RedisDown, RedisLink
from proxy.budgets import BudgetKey

__all__ = ["FleetAnswer", "FleetBudgetLedger", "FleetKey", "fleet_key"]

log = logging.getLogger("llm_proxy.budgets")

BATCH_MAX: Final = 256
INBOX_SIZE: Final = 1024
FLUSH_TIMEOUT_S: Final = 1.0
_EXPIRY_MARGIN_MS: Final = 3_600_000
_DIGEST: Final = hashlib.sha1(FLEET_BUDGET_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def fleet_key(key: BudgetKey, start_ms: int) -> str:
    """The Redis key of one budget scope's period."""
    return f"{KEY_PREFIX}budget:{key.scope}:{key.id}:{key.period}:{start_ms}"


@dataclasses.dataclass(frozen=True, slots=True)
class FleetKey:
    """One period of one scope as an admission or settle sends it."""

    name: str
    end_ms: int
    seed_spent: float
    seed_unpriced: int
    limit_usd: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class FleetAnswer:
    """The fleet's decision: 0 (reserved) or the 1-based index of the refusing key; each key's
    spent and reserved after it."""

    refused: int
    figures: list[tuple[float, float]]


class _Pending:
    __slots__ = ("amount", "answer", "done", "gone", "keys")

    def __init__(self, keys: list[FleetKey], amount: float) -> None:
        self.keys = keys
        self.amount = amount
        self.answer: FleetAnswer | None = None
        self.gone = False  # its caller was cancelled while waiting
        self.done = trio.Event()


class FleetBudgetLedger:
    """Budgets counted in Redis for every process sharing it, in batched round trips."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._send, self._receive = trio.open_memory_channel[_Pending | None](INBOX_SIZE)
        # Per key: [end ms, seed spent, seed unpriced, reserved to take back, spent, unpriced]
        self._settles: dict[str, list[float]] = {}
        self._woken = False
        self._closed = False
        self.round_trips = 0

    @property
    def up(self) -> bool:
        """Whether Redis answers (else the keeper decides locally)."""
        return self._link.up and not self._closed

    @property
    def refuses(self) -> bool:
        """Whether ``on_redis_down`` is "refuse"."""
        return self._link.refuses

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send batches until :meth:`close`, then the last settles."""
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < BATCH_MAX:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._round_trip([p for p in batch if p is not None])
        with trio.move_on_after(FLUSH_TIMEOUT_S, shield=True):
            await self._round_trip([])

    def close(self) -> None:
        """Stop taking admissions; :meth:`run` sends the pending settles and returns."""
        self._closed = True
        self._send.close()

    async def admit(self, keys: list[FleetKey], amount: float) -> FleetAnswer | None:
        """Check and reserve fleet-wide; None when Redis did not answer (decide locally)."""
        if not self.up:
            await trio.lowlevel.checkpoint()
            return None
        pending = _Pending(keys, amount)
        try:
            await self._send.send(pending)
        except trio.ClosedResourceError:
            return None
        try:
            await pending.done.wait()
        except trio.Cancelled:
            # The caller left: what the script reserved for it is given back when it answers.
            pending.gone = True
            raise
        return pending.answer

    def settle_nowait(
        self,
        back: list[FleetKey],
        amount: float,
        add: list[FleetKey],
        cost_usd: float,
        unpriced: int,
    ) -> None:
        """Take ``amount`` back from the ``back`` keys and add the cost to the ``add`` keys, with
        the next round trip (never waits)."""
        for key in back:
            entry = self._entry(key)
            entry[3] += amount
        for key in add:
            entry = self._entry(key)
            entry[4] += cost_usd
            entry[5] += unpriced
        if not self._woken and not self._closed:
            try:
                self._send.send_nowait(None)
                self._woken = True
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass

    def _entry(self, key: FleetKey) -> list[float]:
        entry = self._settles.get(key.name)
        if entry is None:
            entry = self._settles[key.name] = [
                key.end_ms + _EXPIRY_MARGIN_MS,
                key.seed_spent,
                key.seed_unpriced,
                0.0,
                0.0,
                0,
            ]
        return entry

    def _keep(self, settles: dict[str, list[float]]) -> None:
        """Put settles that did not reach Redis back, for the next round trip: spend counted
        twice (if a timed-out one ran after all) errs on the safe side, spend lost would not."""
        for name, entry in settles.items():
            now = self._settles.get(name)
            if now is None:
                self._settles[name] = entry
                continue
            now[1] = max(now[1], entry[1])
            now[2] = max(now[2], entry[2])
            for field in (3, 4, 5):
                now[field] += entry[field]

    async def _round_trip(self, live: list[_Pending]) -> None:
        settles, self._settles, self._woken = self._settles, {}, False
        if not live and not settles:
            return
        names: list[str] = list(settles)
        args: list[str] = [str(len(settles)), str(len(live))]
        for entry in settles.values():
            args += [
                str(int(entry[0])),
                repr(entry[1]),
                str(int(entry[2])),
                repr(entry[3]),
                repr(entry[4]),
                str(int(entry[5])),
            ]
        for pending in live:
            args += [str(len(pending.keys)), repr(pending.amount)]
            for key in pending.keys:
                names.append(key.name)
                args += [
                    str(key.end_ms + _EXPIRY_MARGIN_MS),
                    repr(key.seed_spent),
                    str(key.seed_unpriced),
                    repr(key.limit_usd) if key.limit_usd is not None else "-1",
                ]
        try:
            reply = await self._link.call(lambda client: _run_script(client, names, args))
        except (RedisDown, coredis.exceptions.RedisError) as exc:
            if not isinstance(exc, RedisDown):
                log.exception("fleet budgets: the round trip failed; deciding in this process")
            self._keep(settles)
            for pending in live:
                # A timed-out script may have reserved for it: given back with the settles, or
                # the budget would stay reserved until its period ends.
                self.settle_nowait(pending.keys, pending.amount, [], 0.0, 0)
                pending.done.set()  # answer None: decided locally
            return
        self.round_trips += 1
        assert isinstance(reply, list)
        at = 0
        for pending in live:
            refused = int(reply[at])
            at += 1
            figures = []
            for _ in pending.keys:
                figures.append((float(reply[at]), float(reply[at + 1])))
                at += 2
            pending.answer = FleetAnswer(refused, figures)
            if pending.gone and refused == 0:
                self.settle_nowait(pending.keys, pending.amount, [], 0.0, 0)
            pending.done.set()


async def _run_script(client: Client, keys: list[str], args: list[str]) -> object:
    try:
        return await client.evalsha(_DIGEST, keys=keys, args=args)
    except coredis.exceptions.NoScriptError:
        await client.script_load(FLEET_BUDGET_SCRIPT)
        return await client.evalsha(_DIGEST, keys=keys, args=args)
