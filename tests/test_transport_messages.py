"""``transport.MessageConnection`` against a real websockets server on 127.0.0.1: complete
messages reach the handler in order (single frames, fragments, binary, those read before
``listen``), text that is not UTF-8 closes with 1007, and ``listen`` after the close resolves at
once. Run against every websockets release the project supports (13.x, 15.0.1, the newest).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from piagent.transport import Link, LinkSettings, MessageConnection, open_socket

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[ServerConnection], Awaitable[None]]


async def _fragments(*parts: str) -> AsyncIterator[str]:
    for part in parts:
        yield part


Client = Callable[[MessageConnection, list[str | bytes]], Awaitable[None]]


def _run(handler: Handler, client: Client) -> list[str | bytes]:
    """Serve ``handler`` on a free port, connect, run ``client``; the messages it listened to."""
    got: list[str | bytes] = []

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}/"
            async with await open_socket(url, LinkSettings(connect_timeout=5)) as ws:
                await asyncio.wait_for(client(ws, got), 10)

    asyncio.run(main())
    return got


async def _listen(ws: MessageConnection, got: list[str | bytes]) -> None:
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ws.listen(got.append, closed)
    await closed


def test_messages_reach_the_handler_in_order_fragments_and_binary_too() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")
        await ws.send(_fragments("frag", "men", "ted"))
        await ws.send(b"\x00\x01binary")
        await ws.send("last: \u00e9\u20ac")
        await ws.close()

    got = _run(handler, _listen)
    assert got == ["first", "fragmented", b"\x00\x01binary", "last: \u00e9\u20ac"]


def test_messages_read_before_listen_are_handed_over_first() -> None:
    sent = asyncio.Event()  # made outside the loop: fine from Python 3.10 on

    async def handler(ws: ServerConnection) -> None:
        await ws.send("early")
        sent.set()
        await ws.recv()  # the client's go-ahead, sent once it listens
        await ws.send("later")
        await ws.close()

    async def client(ws: MessageConnection, got: list[str | bytes]) -> None:
        await sent.wait()
        await asyncio.sleep(0.1)  # "early" is read while nobody listens
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ws.listen(got.append, closed)
        assert got == ["early"]
        await ws.send("go")
        await closed

    assert _run(handler, client) == ["early", "later"]


def test_text_that_is_not_utf8_closes_with_1007_and_nothing_more_is_handled() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.protocol.send_text(b"\xff\xfe")
        ws.send_data()
        await ws.send("after")
        await ws.wait_closed()

    codes: list[int] = []

    async def client(ws: MessageConnection, got: list[str | bytes]) -> None:
        await _listen(ws, got)
        assert ws.protocol.close_sent is not None
        codes.append(ws.protocol.close_sent.code)

    assert _run(handler, client) == []
    assert codes == [1007]


def test_listen_after_the_close_resolves_at_once() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("bye")
        await ws.close()

    async def client(ws: MessageConnection, got: list[str | bytes]) -> None:
        await ws.wait_closed()
        await _listen(ws, got)

    assert _run(handler, client) == ["bye"]


class _Outbox:
    """Stands in for the link's ``Session``: hands it the frames to send."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames

    def data_to_send(self) -> list[str]:
        frames, self.frames = self.frames, []
        return frames


def test_frames_the_link_writes_itself_arrive_whole_at_every_length_class() -> None:
    # The 7-bit, 16-bit and 64-bit length forms at their edges, text beyond ASCII, and more
    # frames than one draw of masking keys covers.
    frames = ["", "a" * 125, "b" * 126, "\u00e9" * 32767, "c" * 65535, "d" * 65536]
    frames += [f"frame {i}" for i in range(300)]
    received: list[str | bytes] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)

    async def client(ws: MessageConnection, got: list[str | bytes]) -> None:
        link = Link(ws, _Outbox(list(frames)), max_backlog=1000)  # type: ignore[arg-type]
        link.flush()
        assert link.backlog == 0  # written at once, not through the writer task
        await ws.close()

    _run(handler, client)
    assert received == frames
