"""A hostile upstream: answers every chat call with exactly the scripted bytes, whatever the path.

It speaks no protocol at all, so one class stands in for OpenAI, Gemini or Ollama: the gateway's
provider is pointed at it and each queued :class:`Answer` is sent verbatim, piece by piece, lazily
(``parts`` may be a generator of many megabytes that is never held in memory at once). Model
listings (``GET``) get a harmless empty list unless :attr:`HostileUpstream.listings` has an
answer queued. It records how many body bytes each answer managed to deliver before it ended or
the gateway hung up, which is how a test proves that the gateway stopped reading early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

import trio

from .asgi_server import Receive, Received, ResponseWriter, ScriptedUpstream

__all__ = ["EMPTY_LISTING", "Answer", "Delivery", "HostileUpstream"]

# Valid as OpenAI's {"data": [...]}, Gemini's {"models": [...]} and Ollama's {"models": [...]}.
EMPTY_LISTING = b'{"object": "list", "data": [], "models": []}'


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer: status, headers, then ``parts`` in order.

    ``content_type`` None sends no content-type at all. ``content_length`` sends that header
    (a lie when it does not match the parts). After the parts: ``stall_s`` keeps the connection
    open without ending the body; ``cut`` drops the connection instead of ending the body.
    """

    parts: Iterable[bytes]
    status: int = 200
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    content_length: int | None = None
    interval_s: float = 0.0
    stall_s: float = 0.0
    cut: bool = False


@dataclass(slots=True)
class Delivery:
    """What happened to one answer: body bytes written, and whether it was sent to its end."""

    path: str
    sent: int = 0
    finished: bool = False


class HostileUpstream(ScriptedUpstream[Answer]):
    """Scripted raw answers on 127.0.0.1; ``base_url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: deque[Answer] = deque()
        self.deliveries: list[Delivery] = []

    async def _handle(self, request: Received, reply: ResponseWriter, receive: Receive) -> None:
        if request.method == "GET":
            default = Answer((EMPTY_LISTING,))
            answer = self.listings.popleft() if self.listings else default
        else:
            answer = self.next_behaviour(
                Answer((b'{"error": {"message": "no answer queued", "type": "test"}}',), status=503)
            )
        delivery = Delivery(request.path)
        self.deliveries.append(delivery)
        await self._answer_watched(reply, receive, partial(_send, reply, answer, delivery))

    def clear(self) -> None:
        """Forget queued chat answers (a call that never reached us must not shift the next one)."""
        self._queue.clear()

    @property
    def last(self) -> Delivery:
        """The delivery of the latest answer."""
        return self.deliveries[-1]


async def _send(reply: ResponseWriter, answer: Answer, delivery: Delivery) -> bool:
    headers = dict(answer.headers)
    if answer.content_type is not None:
        headers["content-type"] = answer.content_type
    if answer.content_length is not None:
        headers["content-length"] = str(answer.content_length)
    await reply.start(answer.status, headers)
    for part in answer.parts:
        if answer.interval_s:
            await trio.sleep(answer.interval_s)
        await reply.write(part)
        delivery.sent += len(part)
    if answer.stall_s:
        await trio.sleep(answer.stall_s)
    if answer.cut:
        reply.finished = True  # the server, not the client, ends this one
        return True
    await reply.end()
    delivery.finished = True
    return False
