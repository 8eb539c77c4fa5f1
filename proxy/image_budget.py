"""How much memory fetched images may hold, and how many fetches may run: in all and per client.

An image fetched for an upstream that needs it inline sits in memory from its first byte until
that upstream has received the call: as bytes while it arrives, then as the base64 of a data URL,
then inside the upstream request body. Each of these is about the size of the base64 text (4/3 of
the image), and the gateway drops one before it builds the next (a sync step, during which no
other call runs), so :func:`inlined_size` is what one image costs at any moment another call may
look. A call reserves that much per image before reading its body, against the gateway's budget
and its client's share, and gives it back once the upstream has the request (:class:`ImageLease`).

Not counted: the moment one call builds its upstream body, when its data URLs, the adapter's
copies of their payloads and the JSON encoder's buffer (half again the body) exist together,
about 3.5 times that call's images as base64. It is one synchronous step, so one call at a time:
memory stays under the budget plus that much for the largest call (``images.max_bytes`` per image,
50 MB per call).

Refusals are immediate, never a queue: a call refused for its client's share gets 429 (that client
holds too much already), one refused for the gateway's budget 503 (the gateway is busy); both with
``retry-after``. Fetch slots, by contrast, are waited for, first the client's own share and then
the gateway's: a client's backlog waits behind its own fetches, not in front of other clients'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

import trio

from proxy.errors import RateLimited, UpstreamUnavailable

__all__ = [
    "FetchSlot",
    "ImageBudget",
    "ImageBudgetStatistics",
    "ImageLease",
    "inlined_size",
]


def inlined_size(nbytes: int) -> int:
    """The memory one image of ``nbytes`` holds until its upstream call is sent: its base64."""
    return -(-nbytes // 3) * 4


@dataclass(frozen=True, slots=True)
class ImageBudgetStatistics:
    """Image memory and fetches now, the peak, and the calls refused (for health and metrics)."""

    bytes_reserved: int
    peak_bytes_reserved: int
    max_bytes_in_flight: int
    clients_holding: int
    fetches_in_flight: int
    fetches_waiting: int
    refused_budget: int
    refused_client_share: int


class ImageBudget:
    """Image bytes held in memory and image fetches running, for the gateway and per client."""

    def __init__(
        self,
        *,
        max_bytes: int,
        max_bytes_per_client: int,
        max_fetches: int,
        max_fetches_per_client: int,
        retry_after_s: float,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_bytes_per_client = max_bytes_per_client
        self.max_fetches_per_client = max_fetches_per_client
        self._retry_after = str(max(1, math.ceil(retry_after_s)))
        self._reserved = 0
        self._peak = 0
        self._held: dict[str, int] = {}  # bytes reserved per client; no entry when none
        self._max_fetches = max_fetches
        self._fetches = trio.Semaphore(max_fetches)
        self._client_fetches: dict[str, trio.Semaphore] = {}  # only while one is used or awaited
        self._refused_budget = 0
        self._refused_client_share = 0

    def lease(self, client: str) -> ImageLease:
        """A new, empty lease for one call of ``client``."""
        return ImageLease(self, client)

    def fetch_slot(self, client: str, deadline: float) -> FetchSlot:
        """One fetch slot for ``client``, waited for until ``deadline``: ``async with`` it."""
        return FetchSlot(self, client, deadline)

    def statistics(self) -> ImageBudgetStatistics:
        """The budget's state now."""
        waiting = self._fetches.statistics().tasks_waiting + sum(
            slots.statistics().tasks_waiting for slots in self._client_fetches.values()
        )
        return ImageBudgetStatistics(
            bytes_reserved=self._reserved,
            peak_bytes_reserved=self._peak,
            max_bytes_in_flight=self.max_bytes,
            clients_holding=len(self._held),
            fetches_in_flight=self._max_fetches - self._fetches.value,
            fetches_waiting=waiting,
            refused_budget=self._refused_budget,
            refused_client_share=self._refused_client_share,
        )

    def _take(self, client: str, nbytes: int) -> None:
        """Reserve ``nbytes`` for ``client``, or raise 429 (its share) / 503 (the gateway's)."""
        held = self._held.get(client, 0)
        if held + nbytes > self.max_bytes_per_client:
            raise self._refusal(
                f"Too much image data in flight for this client: {held} bytes held, {nbytes} "
                f"more would pass its share of {self.max_bytes_per_client} "
                "(images.max_bytes_in_flight_per_client).",
                client_share=True,
            )
        if self._reserved + nbytes > self.max_bytes:
            raise self._refusal(
                "The gateway holds as much image data as it may "
                f"(images.max_bytes_in_flight = {self.max_bytes} bytes).",
                client_share=False,
            )
        self._held[client] = held + nbytes
        self._reserved += nbytes
        self._peak = max(self._peak, self._reserved)

    def _give_back(self, client: str, nbytes: int) -> None:
        """Return ``nbytes`` of ``client``'s reservation."""
        held = self._held[client] - nbytes
        if held:
            self._held[client] = held
        else:
            del self._held[client]
        self._reserved -= nbytes

    def _client_slots(self, client: str) -> trio.Semaphore:
        slots = self._client_fetches.get(client)
        if slots is None:
            slots = self._client_fetches[client] = trio.Semaphore(self.max_fetches_per_client)
        return slots

    def _forget_idle(self, client: str, slots: trio.Semaphore) -> None:
        """Drop a client's semaphore nobody holds or waits for, so idle clients cost nothing."""
        if (
            slots.value == self.max_fetches_per_client
            and not slots.statistics().tasks_waiting
            and self._client_fetches.get(client) is slots
        ):
            del self._client_fetches[client]

    def _busy(self, client_share: bool) -> RateLimited | UpstreamUnavailable:
        """The error for a fetch that found no slot in time."""
        if client_share:
            return self._refusal(
                f"This client's image fetches (images.max_concurrent_fetches_per_client = "
                f"{self.max_fetches_per_client}) stayed busy.",
                client_share=True,
            )
        return self._refusal(
            f"The gateway's image fetches (images.max_concurrent_fetches = {self._max_fetches}) "
            "stayed busy.",
            client_share=False,
        )

    def _refusal(self, reason: str, *, client_share: bool) -> RateLimited | UpstreamUnavailable:
        """A refusal, counted: 429 when the client's share is used up, else 503 (the gateway's)."""
        message = f"{reason} Retry in {self._retry_after} s."
        headers = {"retry-after": self._retry_after}
        if client_share:
            self._refused_client_share += 1
            return RateLimited(message, code="image_share_exhausted", headers=headers)
        self._refused_budget += 1
        return UpstreamUnavailable(message, code="image_budget_exhausted", headers=headers)


class ImageLease:
    """One call's reservation of image memory, given back by :meth:`release` (or at ``with`` exit).

    The call keeps it until its upstream has the request: the images are held until then.
    """

    __slots__ = ("_budget", "client", "reserved")

    def __init__(self, budget: ImageBudget, client: str) -> None:
        self._budget = budget
        self.client = client
        self.reserved = 0

    def reserve(self, nbytes: int) -> None:
        """Reserve ``nbytes`` more, or raise 429/503 (:class:`ImageBudget`) and reserve nothing."""
        self._budget._take(self.client, nbytes)
        self.reserved += nbytes

    def give_back(self, nbytes: int) -> None:
        """Return ``nbytes`` of the reservation (an image smaller than reserved, or dropped)."""
        nbytes = min(nbytes, self.reserved)
        if nbytes > 0:
            self._budget._give_back(self.client, nbytes)
            self.reserved -= nbytes

    def release(self) -> None:
        """Return the whole reservation; harmless when done already."""
        self.give_back(self.reserved)

    def __enter__(self) -> ImageLease:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class FetchSlot:
    """A slot of the client's share, then one of the gateway's, for one fetch."""

    __slots__ = ("_budget", "_client", "_client_slots", "_deadline")

    def __init__(self, budget: ImageBudget, client: str, deadline: float) -> None:
        self._budget = budget
        self._client = client
        self._deadline = deadline
        self._client_slots: trio.Semaphore | None = None

    async def __aenter__(self) -> None:
        budget, client = self._budget, self._client
        # A cancelled caller takes nothing. Past this point nothing yields before the semaphore
        # is taken or waited for, so an idle one cannot be forgotten (and replaced) meanwhile.
        await trio.lowlevel.checkpoint_if_cancelled()
        slots = budget._client_slots(client)
        try:
            got = await _acquire(slots, self._deadline)
        except BaseException:
            budget._forget_idle(client, slots)
            raise
        if not got:
            budget._forget_idle(client, slots)
            raise budget._busy(client_share=True)
        try:
            got = await _acquire(budget._fetches, self._deadline)
        except BaseException:
            slots.release()
            budget._forget_idle(client, slots)
            raise
        if not got:
            slots.release()
            budget._forget_idle(client, slots)
            raise budget._busy(client_share=False)
        self._client_slots = slots

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slots, self._client_slots = self._client_slots, None
        self._budget._fetches.release()
        if slots is not None:
            slots.release()
            self._budget._forget_idle(self._client, slots)


async def _acquire(semaphore: trio.Semaphore, deadline: float) -> bool:
    """Take one unit of ``semaphore`` by ``deadline``; False if none came free in time."""
    try:
        semaphore.acquire_nowait()
    except trio.WouldBlock:
        with trio.move_on_at(deadline):
            await semaphore.acquire()
            return True
        return False
    # Shielded: the unit is taken, and a caller that took it must hear so (trio's rule).
    await trio.lowlevel.cancel_shielded_checkpoint()
    return True
