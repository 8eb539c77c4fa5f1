"""The image budget: memory reserved per image before its body is read, a share per client, fetch
slots waited for in the client's share first, and what a refusal answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
import trio.testing

from proxy.errors import RateLimited, UpstreamUnavailable
from proxy.image_budget import ImageBudget, inlined_size
from proxy.images import ImageError, ImageFetcher, ImagePolicy
from tests.fakes.image_server import CAT_PNG, FakeImageServer

MB = 1_000_000


def budget(**changes: int) -> ImageBudget:
    settings = {
        "max_bytes": 10 * MB,
        "max_bytes_per_client": 4 * MB,
        "max_fetches": 3,
        "max_fetches_per_client": 2,
    }
    settings.update(changes)
    return ImageBudget(**settings, retry_after_s=2.5)


def test_inlined_size_is_the_base64_length() -> None:
    assert [inlined_size(n) for n in (0, 1, 2, 3, 4, 3 * MB)] == [0, 4, 4, 4, 8, 4 * MB]


def test_a_client_over_its_share_gets_429_and_over_the_gateways_budget_503() -> None:
    images = budget()
    with images.lease("a") as a1, images.lease("a") as a2:
        a1.reserve(3 * MB)
        with pytest.raises(RateLimited) as share:
            a2.reserve(2 * MB)  # 5 MB > a's 4 MB share
        assert share.value.headers == {"retry-after": "3"}
        assert share.value.code == "image_share_exhausted"
        a2.reserve(1 * MB)  # a refusal reserved nothing
        with images.lease("b") as b, images.lease("c") as c:
            b.reserve(4 * MB)
            with pytest.raises(UpstreamUnavailable) as full:
                c.reserve(3 * MB)  # 11 MB > the gateway's 10
            assert full.value.status == 503
            assert full.value.headers == {"retry-after": "3"}
            c.reserve(2 * MB)
            stats = images.statistics()
            assert (stats.bytes_reserved, stats.peak_bytes_reserved) == (10 * MB, 10 * MB)
            assert (stats.refused_client_share, stats.refused_budget) == (1, 1)
            assert stats.clients_holding == 3
    stats = images.statistics()
    assert (stats.bytes_reserved, stats.peak_bytes_reserved, stats.clients_holding) == (
        0,
        10 * MB,
        0,
    )


def test_a_lease_gives_back_part_then_all_and_never_more_than_it_holds() -> None:
    images = budget()
    lease = images.lease("a")
    lease.reserve(3 * MB)
    lease.give_back(1 * MB)
    assert (lease.reserved, images.statistics().bytes_reserved) == (2 * MB, 2 * MB)
    lease.give_back(5 * MB)
    lease.release()
    assert (lease.reserved, images.statistics().bytes_reserved) == (0, 0)


async def test_a_clients_fetches_wait_for_its_own_share_not_for_other_clients() -> None:
    images = budget()
    far = trio.current_time() + 60
    order: list[str] = []
    release = trio.Event()

    async def fetch(client: str, name: str) -> None:
        async with images.fetch_slot(client, far):
            order.append(name)
            await release.wait()

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(fetch, "a", f"a{n}")
        await trio.testing.wait_all_tasks_blocked()
        assert len(order) == 2  # a's share is 2; its other fetches wait on it
        nursery.start_soon(fetch, "b", "b0")
        await trio.testing.wait_all_tasks_blocked()
        assert order[2:] == ["b0"]  # at once, ahead of a's backlog
        stats = images.statistics()
        assert (stats.fetches_in_flight, stats.fetches_waiting) == (3, 2)
        release.set()
    assert sorted(order) == ["a0", "a1", "a2", "a3", "b0"]
    assert images.statistics().fetches_in_flight == 0
    assert images._client_fetches == {}  # idle clients cost nothing


async def test_a_slot_not_free_by_the_deadline_is_429_for_the_clients_share_else_503(
    autojump_clock: trio.testing.MockClock,
) -> None:
    images = budget(max_fetches=2, max_fetches_per_client=1)
    release = trio.Event()

    async def hold(client: str) -> None:
        async with images.fetch_slot(client, trio.current_time() + 60):
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, "a")
        nursery.start_soon(hold, "b")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RateLimited):
            async with images.fetch_slot("a", trio.current_time() + 5):
                pass
        with pytest.raises(UpstreamUnavailable):
            async with images.fetch_slot("c", trio.current_time() + 5):
                pass
        stats = images.statistics()
        assert (stats.refused_client_share, stats.refused_budget) == (1, 1)
        release.set()
    assert images.statistics().fetches_in_flight == 0
    assert images._client_fetches == {}


async def test_a_cancelled_wait_for_a_slot_takes_nothing() -> None:
    images = budget(max_fetches=1, max_fetches_per_client=1)
    far = trio.current_time() + 60
    async with trio.open_nursery() as nursery:
        release = trio.Event()

        async def hold() -> None:
            async with images.fetch_slot("a", far):
                await release.wait()

        nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        for client in ("a", "b"):  # waiting on the client's share, then on the gateway's
            with trio.move_on_after(0.01):
                async with images.fetch_slot(client, far):
                    pytest.fail("no slot was free")
        release.set()
    async with images.fetch_slot("b", far):
        assert images.statistics().fetches_in_flight == 1
    assert images._client_fetches == {}


# ---------------------------------------------------------------------------------------------
# The fetcher reserves before it reads a body


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeImageServer:
    fake = FakeImageServer()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as real:
        yield real


def policy(**changes: int) -> ImagePolicy:
    settings = {
        "max_bytes": 2 * MB,
        "max_bytes_in_flight": 8 * MB,
        "max_bytes_in_flight_per_client": 4 * MB,
    }
    settings.update(changes)
    return ImagePolicy(allow_private_networks=True, **settings)


async def test_a_declared_length_is_reserved_and_one_that_does_not_fit_is_never_read(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, policy())
    with fetcher.lease("a") as lease:
        mime, data = await fetcher.fetch(f"{server.base_url}/large.png?bytes=1500000", lease)
        assert (mime, len(data)) == ("image/png", 1_500_000)
        assert lease.reserved == 2 * MB  # its base64, held until the lease is released
        sent = server.large_sent
        # 1.6 MB declared: 2,133,336 as base64 does not fit beside the 2 MB held (share: 4 MB).
        # The body waits 30 s before its first byte: refused on the head, nothing read.
        with trio.fail_after(10), pytest.raises(RateLimited):
            await fetcher.fetch(f"{server.base_url}/large.png?bytes=1600000&pause=30", lease)
        assert server.large_sent == sent
        assert lease.reserved == 2 * MB
    assert fetcher.statistics().bytes_reserved == 0


async def test_without_a_declared_length_the_cap_is_reserved_then_the_real_size(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, policy())
    with fetcher.lease("a") as lease:
        _, data = await fetcher.fetch(f"{server.base_url}/large.png?bytes=300000&declare=0", lease)
        assert len(data) == 300_000
        assert lease.reserved == 400_000
        assert fetcher.statistics().peak_bytes_reserved == inlined_size(2 * MB)
        # Over the cap: refused while reading, and the reservation for it given back.
        with pytest.raises(ImageError, match="too large: more than 2000000 bytes"):
            await fetcher.fetch(f"{server.base_url}/large.png?bytes=3000000&declare=0", lease)
        assert lease.reserved == 400_000


async def test_a_fetch_without_a_lease_reserves_only_while_it_runs(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, policy())
    assert await fetcher.fetch(f"{server.base_url}/cat.png") == ("image/png", CAT_PNG)
    stats = fetcher.statistics()
    assert (stats.bytes_reserved, stats.peak_bytes_reserved) == (0, inlined_size(len(CAT_PNG)))
