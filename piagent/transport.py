"""The WebSocket side of a conversation: where to connect, how to open, how to pump frames.

Owns: the conversation URL (public, or signed via ``rest.get_signed_url`` before every
connection when an API key is configured), opening the socket with the limits the protocol
needs (16 MiB messages, an open timeout, WebSocket keepalive pings that bound stall detection),
the classification of connection failures into an ``Ending`` (transient or fatal), and
``Link``: one open socket pumping frames to and from a ``Session``; and ``probe_service``,
which tells whether the service answers without opening a conversation.

Cancellation: ``Link.run`` may be cancelled at any await; the socket is then closed by the
``connect`` context manager of the caller. ``open_link`` may be cancelled while connecting.

Secrets: URLs are logged only through ``rest.redact_url``; the websockets library gets a logger
of its own held at WARNING, because at DEBUG it would log the request line with the signature.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State

from piagent.errors import PiagentError
from piagent.protocol.session import Ending, EndReason, Session, SessionEvent
from piagent.rest import RestError, get_signed_url, redact_url

logger = logging.getLogger(__name__)

# The websockets library logs handshakes (with the URL's query) at DEBUG: keep it quiet.
_ws_logger = logging.getLogger("piagent.websockets")
_ws_logger.setLevel(logging.WARNING)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # what the official SDKs accept (protocol.md §1.1)
CONVERSATION_PATH = "/v1/convai/conversation"
CLOSE_TIMEOUT = 2.0  # seconds to wait for the server's close frame after ours


class ConnectFailed(PiagentError):
    """A connection could not be opened; ``ending`` says why and whether to retry."""

    def __init__(self, ending: Ending) -> None:
        super().__init__(ending.describe())
        self.ending = ending


def public_url(server: str, agent_id: str) -> str:
    """``wss://host/v1/convai/conversation?agent_id=...`` for a public agent."""
    query = urllib.parse.urlencode({"agent_id": agent_id})
    return f"{server.rstrip('/')}{CONVERSATION_PATH}?{query}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a conversation connects: the agent, servers and (optional) API key."""

    agent_id: str
    server: str
    api_base: str
    api_key: str | None = None

    def __repr__(self) -> str:
        key = "***" if self.api_key else None
        return f"Endpoint(agent_id={self.agent_id!r}, server={self.server!r}, api_key={key})"


async def resolve_url(endpoint: Endpoint, *, request_timeout: float) -> str:
    """The URL to connect to now: a fresh signed URL when there is an API key.

    Raises ``ConnectFailed``: fatal for a rejected key or unknown agent, transient otherwise."""
    if not endpoint.api_key:
        return public_url(endpoint.server, endpoint.agent_id)
    try:
        return await get_signed_url(
            endpoint.api_base, endpoint.agent_id, endpoint.api_key, request_timeout=request_timeout
        )
    except RestError as exc:
        if exc.status in (401, 403):
            reason = EndReason.AUTH_REJECTED
        elif exc.status == 404:
            reason = EndReason.AGENT_NOT_FOUND
        elif exc.fatal:
            reason = EndReason.INVALID_REQUEST
        elif exc.status is None:
            reason = EndReason.CONNECT_FAILED
        else:
            reason = EndReason.SERVICE_UNAVAILABLE
        raise ConnectFailed(Ending(reason, exc.status, str(exc), before_metadata=True)) from None


def classify_connect_error(exc: BaseException) -> Ending:
    """An ``Ending`` for an exception raised while opening the socket."""
    detail = type(exc).__name__
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        detail = f"HTTP {status} on upgrade"
        if status in (401, 403):
            reason = EndReason.AUTH_REJECTED
        elif status == 404:
            reason = EndReason.AGENT_NOT_FOUND
        elif status == 429 or status >= 500:
            reason = EndReason.SERVICE_UNAVAILABLE
        else:
            reason = EndReason.INVALID_REQUEST
        return Ending(reason, status, detail, before_metadata=True)
    if isinstance(exc, InvalidURI):
        # Its message quotes the URL, which may be signed: say only that it is invalid.
        return Ending(EndReason.INVALID_REQUEST, None, "invalid server URL", before_metadata=True)
    if isinstance(exc, socket.gaierror):
        detail = f"DNS lookup failed ({exc.strerror})"
    elif isinstance(exc, ssl.SSLError):
        detail = f"TLS failed ({exc.reason or exc})"
    elif isinstance(exc, TimeoutError):
        detail = "timed out opening the connection"
    elif isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
    elif isinstance(exc, InvalidHandshake):
        detail = f"handshake failed ({exc})"
    elif isinstance(exc, ConnectionClosed):
        return Ending(EndReason.CLOSED_BEFORE_METADATA, None, "closed during the handshake", True)
    return Ending(EndReason.CONNECT_FAILED, None, detail, before_metadata=True)


async def probe_service(endpoint: Endpoint, *, limit: float) -> bool:
    """Whether the conversation server answers at all: any HTTP response to a plain ``GET /``.

    Opens no conversation (conversations are billed) and sends no key: it only tells the
    ``offline`` appliance when the service can be reached again."""
    url = urllib.parse.urlsplit(endpoint.server)
    secure = url.scheme in ("wss", "https")
    host = url.hostname or ""
    port = url.port or (443 if secure else 80)
    request = f"GET / HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: piagent\r\n"
    request += "Connection: close\r\n\r\n"
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None
            )
            try:
                writer.write(request.encode("ascii"))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ValueError):
        return False
    return line.startswith(b"HTTP/")


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """Timing of one connection (seconds)."""

    connect_timeout: float = 10.0
    stall_timeout: float = 15.0  # upper bound to notice a server that stopped answering


async def open_socket(url: str, settings: LinkSettings) -> ClientConnection:
    """Open the WebSocket; raises ``ConnectFailed`` with the classified reason."""
    # A silent server is noticed and the socket torn down within stall_timeout: a ping every
    # interval, as long again for its pong, then the close handshake, which a stalled server
    # never completes, bounded by close_timeout.
    close_timeout = min(CLOSE_TIMEOUT, settings.stall_timeout / 4)
    interval = (settings.stall_timeout - close_timeout) / 2
    logger.info("connecting to %s", redact_url(url))
    try:
        return await connect(
            url,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=settings.connect_timeout,
            ping_interval=interval,
            ping_timeout=interval,
            close_timeout=close_timeout,
            compression=None,  # base64 audio gains nothing from deflate; saves CPU on a Pi
            user_agent_header="piagent",
            logger=_ws_logger,
        )
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
        raise ConnectFailed(classify_connect_error(exc)) from None


EventHandler = Callable[[SessionEvent], Awaitable[None]]


class Link:
    """One open socket and its ``Session``: reads frames in, writes the session's frames out.

    ``run`` returns the ``Ending`` when the socket has closed. The owner talks to the session
    through ``session`` and then calls ``flush`` (cheap, never blocks) to wake the writer."""

    def __init__(self, socket_: ClientConnection, session: Session, *, max_backlog: int) -> None:
        self.session = session
        self._ws = socket_
        self._wake = asyncio.Event()
        self._backlog: list[str] = []
        self._max_backlog = max_backlog
        self.dropped_frames = 0
        self._closing = False
        self._sending = False  # the writer task is inside ``send``: frames queue behind it

    @property
    def backlog(self) -> int:
        """Frames handed over but not yet written."""
        return len(self._backlog)

    def flush(self) -> None:
        """Take the session's outgoing frames and wake the writer.

        Audio is what piles up when the network stalls: past ``max_backlog`` frames the oldest
        audio frames are dropped (and counted); control frames are always kept."""
        frames = self.session.data_to_send()
        if not frames:
            return
        if not self._backlog and self._writable():
            # The common case, 50 times a second: nothing waits and the socket takes more now,
            # so the frames go out at once, without a round trip through the writer task.
            protocol = self._ws.protocol
            for frame in frames:
                protocol.send_text(frame.encode())
            self._ws.send_data()
            return
        self._backlog.extend(frames)
        excess = len(self._backlog) - self._max_backlog
        if excess > 0:
            kept: list[str] = []
            for frame in self._backlog:
                if excess > 0 and frame.startswith('{"user_audio_chunk"'):
                    excess -= 1
                    self.dropped_frames += 1
                else:
                    kept.append(frame)
            self._backlog = kept
        self._wake.set()

    def _writable(self) -> bool:
        """Whether a frame may be written now, as ``send`` would: the connection open, the
        writer task not inside a ``send`` (only it and this path send, and never a fragmented
        message), no close begun, and the transport neither closing nor asking writers to wait
        (flow control).

        Only what websockets has kept the same from 13.0 (pyproject's minimum; Debian trixie
        ships 15.0.1) to now: ``protocol``, ``paused``, ``transport`` and ``send_data``. Its own
        flag for a send in progress changed name between those versions, so the link keeps
        its own."""
        ws = self._ws
        return (
            not self._closing
            and not self._sending
            and ws.protocol.state is State.OPEN
            and not ws.paused
            and not ws.transport.is_closing()
        )

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send our close frame after whatever is queued (safe to cancel)."""
        self._closing = True
        self.flush()
        await self._drain()
        await self._ws.close(code, reason)

    async def run(self, on_event: EventHandler) -> Ending:
        """Pump frames until the socket closes; events go to ``on_event`` in order."""
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(self._write_loop())
            try:
                await self._read_loop(on_event)
            finally:
                writer.cancel()
        ending = self.session.ending
        assert ending is not None  # _read_loop returns only after receive_close
        return ending

    async def _read_loop(self, on_event: EventHandler) -> None:
        session = self.session
        try:
            async for text in self._ws:
                session.receive_text(text)
                self.flush()  # pongs go out before the events are handled
                for event in session.events_received():
                    await on_event(event)
                self.flush()
        except ConnectionClosed:
            pass  # the close frame (or its absence) is read below
        rcvd = self._ws.protocol.close_rcvd
        sent = self._ws.protocol.close_sent
        lost = None
        if rcvd is None:
            code, reason = None, ""
            if sent is not None and sent.code == 1011 and "keepalive" in sent.reason:
                lost, reason = EndReason.STALLED, "no answer to WebSocket pings"
        else:
            code, reason = rcvd.code, rcvd.reason
        session.receive_close(code, reason, lost=lost)
        for event in session.events_received():
            await on_event(event)

    async def _drain(self) -> None:
        self._sending = True
        try:
            while self._backlog:
                frame = self._backlog.pop(0)
                await self._ws.send(frame)
        finally:
            self._sending = False

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._drain()
        except ConnectionClosed:
            return  # the reader sees the close and reports it
