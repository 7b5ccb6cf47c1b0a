"""The WebSocket side of a conversation: where to connect, how to open, how to pump frames.

Owns: the conversation URL (public, or signed via ``rest.get_signed_url`` before every
connection when an API key is configured), opening the socket with the limits the protocol
needs (16 MiB messages, an open timeout, WebSocket keepalive pings that bound stall detection),
the classification of connection failures into an ``Ending`` (transient or fatal), and
``Link``: one open socket pumping frames to and from a ``Session``; ``MessageConnection``, the
websockets client connection that hands each complete message to the link in the same callback
that read it; and ``probe_service``, which tells whether the service answers without opening a
conversation.

Cancellation: ``Link.run`` may be cancelled at any await; the socket is then closed by the
``connect`` context manager of the caller. ``open_link`` may be cancelled while connecting.

Secrets: URLs are logged only through ``rest.redact_url``; the websockets library gets a logger
of its own held at WARNING, because at DEBUG it would log the request line with the signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

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
_HEAD_16 = struct.Struct("!BBH")  # a frame's first two bytes and a 16-bit payload length
_HEAD_64 = struct.Struct("!BBQ")  # ... and a 64-bit one


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


MessageHandler = Callable[[str | bytes], None]


class MessageConnection(ClientConnection):
    """websockets' asyncio client connection, handing each complete data message to a handler
    in the callback that read its last frame (``listen``), instead of queueing it for ``recv``.

    With ``recv`` every message costs a second turn of the event loop: the reading callback
    queues it and wakes the task waiting in ``recv``. A conversation receives about twenty
    messages a second, so the link takes them here, where the frames are parsed. Messages
    that arrive before ``listen`` (between the handshake and the link) are kept and handed
    over first, in order. Text is decoded as UTF-8 (invalid UTF-8 fails the connection with
    1007, as ``recv`` does); binary messages are handed over as bytes. ``recv`` is not used.

    Relies only on what websockets 13.0 to 17.x share: ``process_event`` (called once per
    frame after the handshake), ``connection_lost``, ``send_context`` and the frames' fields.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_message: MessageHandler | None = None
        self._on_closed: asyncio.Future[None] | None = None
        self._held: list[str | bytes] = []  # complete messages read before ``listen``
        self._fragments: list[bytes] = []  # of a fragmented message, in order
        self._text = False  # the message being assembled is text
        self._lost = False
        self._failing: asyncio.Task[None] | None = None

    def listen(self, on_message: MessageHandler, closed: asyncio.Future[None]) -> None:
        """Hand every message to ``on_message`` from now on (those already read first, now),
        and resolve ``closed`` once the connection is closed (at once if it already is)."""
        self._on_message, self._on_closed = on_message, closed
        held, self._held = self._held, []
        for message in held:
            on_message(message)
        if self._lost and not closed.done():
            closed.set_result(None)

    def process_event(self, event: Any) -> None:
        """One event from the protocol: a data frame is assembled here, the rest (the handshake
        response, pings, pongs, close) goes to websockets."""
        if not isinstance(event, Frame) or event.opcode not in (
            Opcode.TEXT,
            Opcode.BINARY,
            Opcode.CONT,
        ):
            super().process_event(event)
            return
        if event.opcode is not Opcode.CONT:
            self._text = event.opcode is Opcode.TEXT
            if event.fin:  # the usual case: a whole message in one frame
                self._deliver(bytes(event.data))
                return
            self._fragments = [bytes(event.data)]
            return
        self._fragments.append(bytes(event.data))
        if event.fin:
            data = b"".join(self._fragments)
            self._fragments = []
            self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        if self._failing is not None:
            return  # closing for invalid data: nothing more is read
        message: str | bytes = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError as exc:
                self._failing = self.loop.create_task(self._fail(exc))
                return
        if self._on_message is None:
            self._held.append(message)
        else:
            self._on_message(message)

    async def _fail(self, exc: UnicodeDecodeError) -> None:
        """Close with 1007, as ``recv`` does for text that is not UTF-8."""
        with contextlib.suppress(ConnectionClosed):
            async with self.send_context():
                self.protocol.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost = True
        closed = self._on_closed
        if closed is not None and not closed.done():
            closed.set_result(None)


async def open_socket(url: str, settings: LinkSettings) -> MessageConnection:
    """Open the WebSocket for a ``Link``; raises ``ConnectFailed`` with the classified reason."""
    ws = await _connect(url, settings, MessageConnection)
    assert isinstance(ws, MessageConnection)
    return ws


async def open_plain_socket(url: str, settings: LinkSettings) -> ClientConnection:
    """The same socket as websockets' own connection, read with ``recv``, for a one-off
    check (``piagent doctor``): a ``MessageConnection`` hands its messages to a link only."""
    return await _connect(url, settings, ClientConnection)


async def _connect(
    url: str, settings: LinkSettings, connection: type[ClientConnection]
) -> ClientConnection:
    # A silent server is noticed and the socket torn down within stall_timeout: a ping every
    # interval, as long again for its pong, then the close handshake, which a stalled server
    # never completes, bounded by close_timeout.
    close_timeout = min(CLOSE_TIMEOUT, settings.stall_timeout / 4)
    interval = (settings.stall_timeout - close_timeout) / 2
    logger.info("connecting to %s", redact_url(url))
    try:
        ws = await connect(
            url,
            create_connection=connection,
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
    return ws


EventHandler = Callable[[SessionEvent], None]


class Link:
    """One open socket and its ``Session``: reads frames in, writes the session's frames out.

    ``run`` returns the ``Ending`` when the socket has closed. The owner talks to the session
    through ``session`` and then calls ``flush`` (cheap, never blocks) to wake the writer."""

    def __init__(self, socket_: MessageConnection, session: Session, *, max_backlog: int) -> None:
        self.session = session
        self._ws = socket_
        self._wake = asyncio.Event()
        self._backlog: list[str] = []
        self._max_backlog = max_backlog
        self.dropped_frames = 0
        self._closing = False
        self._sending = False  # the writer task is inside ``send``: frames queue behind it
        self._masks = b""  # masking keys for ``_text_frame``, 4 bytes each, from ``_mask_at``
        self._mask_at = 0

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
            # so the frames go out at once, without a round trip through the writer task, each
            # framed here (see ``_text_frame``).
            write = self._ws.transport.write
            for data in self._ws.protocol.data_to_send():  # websockets' own, if any: first
                write(data)  # never the end of the stream: the connection is open
            for frame in frames:
                write(self._text_frame(frame.encode()))
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

    def send_audio(self, audio: bytes) -> None:
        """One chunk of user audio (in the session's input format), sent as ``flush`` would
        send it after ``session.send_audio``, with less work when nothing waits: the frame is
        made as bytes and written at once (50 times a second)."""
        session = self.session
        if self._backlog or session.has_data_to_send or not self._writable():
            session.send_audio(audio)
            self.flush()
            return
        frame = self._text_frame(session.audio_frame(audio))
        write = self._ws.transport.write
        for data in self._ws.protocol.data_to_send():  # websockets' own, if any: first
            write(data)
        write(frame)

    def _text_frame(self, payload: bytes) -> bytes:
        """One unfragmented, masked text frame (RFC 6455 §5.2), as websockets' ``send_text``
        would write it with no extensions (the link asks for none), for less work a frame:
        no frame object, and the masking keys drawn from the system's random source 256 at a
        time rather than one call a frame (RFC 6455 §5.3: unpredictable keys)."""
        n = len(payload)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = _HEAD_16.pack(0x81, 0x80 | 126, n)
        else:
            head = _HEAD_64.pack(0x81, 0x80 | 127, n)
        at = self._mask_at
        if at >= len(self._masks):
            self._masks, at = os.urandom(1024), 0
        self._mask_at = at + 4
        mask = self._masks[at : at + 4]
        return b"".join((head, mask, apply_mask(payload, mask)))

    def _writable(self) -> bool:
        """Whether a frame may be written now, as ``send`` would: the connection open, the
        writer task not inside a ``send`` (only it and this path send, and never a fragmented
        message), no close begun, and the transport neither closing nor asking writers to wait
        (flow control).

        Only what websockets has kept the same from 13.0 (pyproject's minimum; Debian trixie
        ships 15.0.1) to now: ``protocol`` (its ``state`` and ``data_to_send``), ``paused`` and
        ``transport``. Its own flag for a send in progress changed name between those
        versions, so the link keeps its own."""
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
        """Pump frames until the socket closes; events go to ``on_event`` in order, called
        from the callback that read their message (so it must not block)."""
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(self._write_loop())
            try:
                await self._read(on_event)
            finally:
                writer.cancel()
        ending = self.session.ending
        assert ending is not None  # _read returns only after receive_close
        return ending

    async def _read(self, on_event: EventHandler) -> None:
        session = self.session
        stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def receive(text: str | bytes) -> None:
            if stopped.done():
                return  # a handler failed: nothing more is handled
            try:
                session.receive_text(text)
                self.flush()  # pongs go out before the events are handled
                for event in session.events_received():
                    on_event(event)
                self.flush()
            except Exception as exc:  # a bug: ends the link as it would a task's
                stopped.set_exception(exc)

        self._ws.listen(receive, stopped)
        await stopped
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
            on_event(event)

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
