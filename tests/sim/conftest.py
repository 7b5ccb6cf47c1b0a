"""Helpers for the simulator tests: a real websockets client and test audio.

Coroutine tests here run under ``asyncio.run`` (the project has no asyncio pytest plugin):
``pytest_pyfunc_call`` below runs ``async def test_*`` functions itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from piagent.audio.codecs import Samples, encode_audio, to_int16
from piagent.protocol.messages import (
    Audio,
    AudioFormat,
    Ping,
    Pong,
    ServerEvent,
    UserAudioChunk,
    encode,
    parse_server,
)
from piagent.sim.agent import AgentDefinition
from piagent.sim.server import SimServer

E = TypeVar("E")

TEST_TIMEOUT = 20.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop, bounded by ``TEST_TIMEOUT``."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT):
            await function(**kwargs)

    asyncio.run(bounded())
    return True


def fast_agent(**changes: Any) -> AgentDefinition:
    """An agent tuned for quick tests: short first message, fast audio, short turn end."""
    settings: dict[str, Any] = {
        "first_message": "Hi.",
        "audio_pace": 20.0,
        "turn_end_silence_ms": 200,
        "ping_interval": None,
        "initiation_timeout": 1.0,
    }
    settings.update(changes)
    return AgentDefinition(**settings)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 8000.0) -> Samples:
    t = np.arange(round(seconds * rate)) / rate
    return to_int16(amplitude * np.sin(2 * np.pi * freq * t))


def silence(seconds: float, rate: int) -> Samples:
    return np.zeros(round(seconds * rate), dtype=np.int16)


class Client:
    """A plain protocol client: sends typed messages, receives parsed events, answers pings."""

    def __init__(self, ws: ClientConnection, *, auto_pong: bool = True) -> None:
        self.ws = ws
        self.auto_pong = auto_pong
        self.events: list[ServerEvent] = []

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str) else encode(message))

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(data))

    async def initiate(self, **fields: Any) -> None:
        await self.send_json({"type": "conversation_initiation_client_data", **fields})

    async def send_audio(
        self,
        samples: Samples,
        audio_format: AudioFormat = AudioFormat.PCM_16000,
        chunk_ms: int = 100,
        realtime: float | None = None,
    ) -> None:
        """Send ``samples`` as user_audio_chunk frames (as fast as possible, or paced)."""
        per_chunk = audio_format.sample_rate * chunk_ms // 1000
        for start in range(0, len(samples), per_chunk):
            piece = samples[start : start + per_chunk]
            await self.send(UserAudioChunk(encode_audio(piece, audio_format)))
            if realtime:
                await asyncio.sleep(chunk_ms / 1000 / realtime)

    async def recv(self, within: float = 5.0) -> ServerEvent:
        """The next event (pings are answered, and returned too)."""
        async with asyncio.timeout(within):
            frame = await self.ws.recv()
        event = parse_server(frame)
        self.events.append(event)
        if self.auto_pong and isinstance(event, Ping):
            await self.send(Pong(event.event_id))
        return event

    async def wait_for(
        self, kind: type[E], within: float = 5.0, where: Callable[[E], bool] | None = None
    ) -> E:
        """Receive until an event of class ``kind`` (matching ``where``) arrives."""
        async with asyncio.timeout(within):
            while True:
                event = await self.recv(within)
                if isinstance(event, kind) and (where is None or where(event)):
                    return event

    async def turn_audio(self, event_id: int, within: float = 5.0) -> list[Audio]:
        """The audio chunks of turn ``event_id`` (those already received included), up to its
        ``is_final`` chunk."""
        chunks = [e for e in self.events if isinstance(e, Audio) and e.event_id == event_id]
        async with asyncio.timeout(within):
            while not chunks or not chunks[-1].is_final:
                chunk = await self.wait_for(Audio, within, lambda a: a.event_id == event_id)
                chunks.append(chunk)
        return chunks

    async def wait_closed(self, within: float = 5.0) -> tuple[int | None, str | None]:
        """Drain events until the server closes; returns (code, reason) it sent."""
        async with asyncio.timeout(within):
            try:
                while True:
                    await self.recv(within)
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason


@asynccontextmanager
async def talk(
    sim: SimServer,
    agent_id: str = "demo",
    *,
    query: str = "",
    initiate: dict[str, Any] | None = None,
    send_initiation: bool = True,
    **connect_kwargs: Any,
) -> AsyncIterator[Client]:
    """Connect to ``sim`` as ``agent_id`` and (by default) send the initiation message."""
    url = f"{sim.ws_base}/v1/convai/conversation?agent_id={agent_id}{query}"
    connect_kwargs.setdefault("max_size", 16 * 1024 * 1024)
    # Tests stop reading whenever they have seen enough; an unbounded queue keeps the client
    # reading the socket, so its closing handshake completes at once.
    connect_kwargs.setdefault("max_queue", None)
    async with connect(url, **connect_kwargs) as ws:
        client = Client(ws)
        if send_initiation:
            with contextlib.suppress(ConnectionClosed):  # refused sockets close at once
                await client.initiate(**(initiate or {}))
        yield client
