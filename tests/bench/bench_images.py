"""Memory and fairness of image inlining, in the scenario of issue 13 item 6.

- memory: one client sends 12 requests at once, each naming 3 distinct 16 MB images (content-length
  declared, served at loopback speed) for Ollama, which needs them inline; the gateway's peak RSS
  (``VmHWM``) against its RSS after one warm-up call, and how the 12 calls were answered;
- memory, many clients: the same 12 requests, each from its own client, so that the gateway's
  budget (not one client's share) is what bounds them;
- fairness: that client sends 12 requests naming 3 slow 1 MB images each (3 s per image); half a
  second later a second client sends one request with one small image: how long it took.

The gateway runs as ``llm-proxy serve`` in a subprocess; the image host and a minimal Ollama
upstream (which reads and drops each body) run in this process.
Run: `.venv/bin/python -m tests.bench.bench_images`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

from tests.fakes.asgi_server import Receive, Scope, Send, serve_asgi
from tests.fakes.image_server import FakeImageServer
from tests.process import CLI, ROOT, clean_env, serve

IMAGE_BYTES = 16_000_000
REQUESTS = 12
IMAGES_PER_REQUEST = 3
SLOW_IMAGE_BYTES = 1_000_000
SLOW_IMAGE_S = 3.0


async def ollama(scope: Scope, receive: Receive, send: Send) -> None:
    """Just enough of Ollama: ``/api/tags`` and a non-streaming ``/api/chat`` (body dropped)."""
    if scope["type"] != "http":
        return
    received = 0
    while True:
        message = await receive()
        received += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            break
    if scope["path"] == "/api/tags":
        body: dict[str, Any] = {"models": []}
    else:
        body = {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": f"got {received} bytes"},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 10,
            "eval_count": 3,
        }
    payload = msgspec.json.encode(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def write_config(directory: Path, upstream: str) -> Path:
    """The gateway's config: Ollama at ``upstream``, private image hosts allowed, no rate limits."""
    path = directory / "config.toml"
    path.write_text(
        f"""\
[server]
graceful_timeout_s = 5

[limits]
default_client_requests_per_minute = 0

[images]
allow_private_networks = true
fetch_timeout_s = 30

[providers.ollama]
base_url = "{upstream}"
timeout_s = 60
"""
    )
    return path


def new_key(database: Path, name: str) -> str:
    """A client key made with ``llm-proxy clients create``."""
    result = subprocess.run(
        [*CLI, "clients", "create", name, "--database", str(database)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        check=True,
    )
    return result.stdout.decode().split()[0]


def vm(pid: int, field: str) -> float:
    """A ``/proc/PID/status`` memory field (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


def chat(urls: list[str]) -> dict[str, Any]:
    """A chat request asking about these images."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": "Describe these."}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {"model": "ollama/llama3.2", "messages": [{"role": "user", "content": parts}]}


async def post(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> httpx.Response:
    """One call to the gateway."""
    return await client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


async def flood(client: httpx.AsyncClient, key: str, bodies: list[dict[str, Any]]) -> Counter[int]:
    """Send ``bodies`` at once; count the answers by status."""
    statuses: Counter[int] = Counter()

    async def one(body: dict[str, Any]) -> None:
        statuses[(await post(client, key, body)).status_code] += 1

    async with trio.open_nursery() as nursery:
        for body in bodies:
            nursery.start_soon(one, body)
    return statuses


async def measure() -> None:
    """Run both scenarios against one gateway process and print the figures."""
    async with trio.open_nursery() as nursery:
        images = FakeImageServer()
        await nursery.start(images.run)
        upstream: str = await nursery.start(serve_asgi, ollama)
        with tempfile.TemporaryDirectory(prefix="bench-images-") as name:
            directory = Path(name)
            database = directory / "gateway.db"
            key_a, key_b = new_key(database, "flooder"), new_key(database, "bystander")
            crowd = [new_key(database, f"crowd-{n}") for n in range(REQUESTS)]
            config = write_config(directory, upstream)
            async with (
                serve(config, database, directory) as server,
                httpx.AsyncClient(base_url=server.url, timeout=120) as client,
            ):
                pid = server.process.pid
                warm = await post(client, key_a, chat([f"{images.base_url}/cat.png"]))
                assert warm.status_code == 200, warm.text
                idle = vm(pid, "VmRSS")

                big = f"{images.base_url}/large.png?bytes={IMAGE_BYTES}"
                bodies = [
                    chat([f"{big}&r={r}&i={i}" for i in range(IMAGES_PER_REQUEST)])
                    for r in range(REQUESTS)
                ]
                began = time.monotonic()
                statuses = await flood(client, key_a, bodies)
                took = time.monotonic() - began
                peak = vm(pid, "VmHWM")
                print(
                    f"memory: {REQUESTS} requests x {IMAGES_PER_REQUEST} x "
                    f"{IMAGE_BYTES / 1e6:g} MB images: RSS {idle:.0f} MB after warm-up, peak "
                    f"(VmHWM) {peak:.0f} MB; answers {dict(sorted(statuses.items()))} in "
                    f"{took:.1f} s"
                )

                bodies = [
                    chat([f"{big}&crowd={r}&i={i}" for i in range(IMAGES_PER_REQUEST)])
                    for r in range(REQUESTS)
                ]
                crowded: Counter[int] = Counter()

                async def one(key: str, body: dict[str, Any]) -> None:
                    crowded[(await post(client, key, body)).status_code] += 1

                began = time.monotonic()
                async with trio.open_nursery() as calls:
                    for key, body in zip(crowd, bodies, strict=True):
                        calls.start_soon(one, key, body)
                took = time.monotonic() - began
                print(
                    f"memory, {REQUESTS} clients: the same calls, one per client: peak (VmHWM) "
                    f"{vm(pid, 'VmHWM'):.0f} MB; answers {dict(sorted(crowded.items()))} in "
                    f"{took:.1f} s"
                )

                pause = SLOW_IMAGE_S / (SLOW_IMAGE_BYTES / 65_536)
                slow = f"{images.base_url}/large.png?bytes={SLOW_IMAGE_BYTES}&chunk=65536"
                slow += f"&pause={pause:.4f}"
                bodies = [
                    chat([f"{slow}&r={r}&i={i}" for i in range(IMAGES_PER_REQUEST)])
                    for r in range(REQUESTS)
                ]
                answers: dict[str, Any] = {}

                async def bystander() -> None:
                    await trio.sleep(0.5)
                    started = time.monotonic()
                    response = await post(client, key_b, chat([f"{images.base_url}/cat.png?b"]))
                    answers["bystander"] = (response.status_code, time.monotonic() - started)

                async def flooder() -> None:
                    answers["flooder"] = await flood(client, key_a, bodies)

                async with trio.open_nursery() as both:
                    both.start_soon(flooder)
                    both.start_soon(bystander)
                status, waited = answers["bystander"]
                print(
                    f"fairness: while one client fetches {REQUESTS * IMAGES_PER_REQUEST} slow "
                    f"images ({dict(sorted(answers['flooder'].items()))}), another client's "
                    f"one-image call answered {status} after {waited:.2f} s"
                )
        nursery.cancel_scope.cancel()


def main() -> None:
    """Run the bench."""
    trio.run(measure)


if __name__ == "__main__":
    sys.exit(main())
