"""``transport.probe_service``: whether the service answers, without opening a conversation."""

from __future__ import annotations

import asyncio
import socket

from piagent.sim.server import SimServer
from piagent.transport import Endpoint, probe_service


def test_a_live_service_answers_and_no_conversation_is_opened() -> None:
    async def main() -> None:
        async with SimServer() as sim:
            endpoint = Endpoint("demo", sim.ws_base, sim.http_base)
            assert await probe_service(endpoint, limit=2.0)
            assert sim.conversations == []

    asyncio.run(main())


def test_nothing_listening_is_no_answer() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        endpoint = Endpoint("demo", f"ws://127.0.0.1:{port}", "http://127.0.0.1")
        assert not asyncio.run(probe_service(endpoint, limit=2.0))


def test_a_server_that_accepts_and_stays_silent_is_no_answer_within_the_limit() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read()  # reads, never answers
            finally:
                writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            loop = asyncio.get_running_loop()
            started = loop.time()
            endpoint = Endpoint("demo", f"ws://127.0.0.1:{port}", "http://127.0.0.1")
            assert not await probe_service(endpoint, limit=0.3)
            assert loop.time() - started < 1.0

    asyncio.run(main())
