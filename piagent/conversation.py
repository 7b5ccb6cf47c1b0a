"""One conversation's I/O: the connection, the agent's audio, client tools; events up, no policy.

Owns, for one WebSocket connection: resolving the URL and opening the socket (``transport``), a
fresh ``Session``, the resamplers both ways (the microphone's rate to the input format, the
output format to the speaker's), playing the agent's audio into the ``AudioSink``, running
client tools, and turning what the server says into the appliance's typed events
(``ConversationStarted``, ``AgentAudio``, ``QueueWaiting`` ... and at the very end, always,
``ConnectionClosed`` with the classified ``Ending``). It decides nothing: when to hang up,
what to send and what a drop means are the appliance's; ``AgentClient`` runs its commands here.

Cancellation: ``run`` may be cancelled at any await; an open conversation is then closed with
1000, as a user's hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
import numpy.typing as npt

from piagent.appliance.events import (
    AgentAudio,
    ConnectionClosed,
    ConversationStarted,
    Event,
    Interrupted,
    QueueAdmitted,
    QueueTimedOut,
    QueueWaiting,
    ServerEnding,
    UserHeard,
    VoiceActivity,
)
from piagent.audio.codecs import NATIVE_PCM16, decode_audio, encode_audio
from piagent.audio.resample import StreamResampler
from piagent.errors import PiagentError
from piagent.logs import journal_fields
from piagent.protocol.messages import (
    AgentResponse,
    AgentResponseCorrection,
    AgentToolResponse,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    FlatErrorEvent,
    Interruption,
    Ping,
    QueueStatus,
    UnknownMessage,
    UserTranscript,
    VadScore,
)
from piagent.protocol.session import (
    ConversationEnded,
    Ending,
    EndReason,
    Session,
    SessionEvent,
    SessionState,
)
from piagent.transport import (
    CLOSE_TIMEOUT,
    ConnectFailed,
    Endpoint,
    Link,
    LinkSettings,
    open_socket,
    resolve_url,
)

logger = logging.getLogger(__name__)

Samples = npt.NDArray[np.int16]


class AudioSink(Protocol):
    """Where agent audio goes: the speaker's playback buffer."""

    @property
    def rate(self) -> int:
        """Sample rate (Hz) of what ``play`` takes."""
        ...

    @property
    def is_playing(self) -> bool:
        """True while queued audio remains to be heard."""
        ...

    def play(self, samples: Samples) -> None:
        """Queue int16 mono samples at ``rate``; returns at once."""

    def flush(self) -> None:
        """Drop everything queued: silent within one device period."""

    def mark_end(self) -> None:
        """The agent's turn has no more audio: play what is queued without waiting for more."""

    async def wait_drained(self) -> None:
        """Return once everything queued has been played."""


class ToolRunner(Protocol):
    """Runs client tool calls (``piagent.tools.ToolRegistry`` is one)."""

    async def run(self, call: ClientToolCall) -> ClientMessage | None:
        """The result to send, or None when the call expects no response."""
        ...


@dataclass(frozen=True, slots=True)
class Line:
    """Something said or done in a conversation, for a person to read (the demo, the journal)."""

    kind: str  # user | agent | correction | tool
    text: str


@dataclass(frozen=True, slots=True)
class VadLevel:
    """The server's voice-activity score changed (the LEDs show it as brightness)."""

    score: float


@dataclass(slots=True)
class Parts:
    """What a conversation needs from the client that owns it."""

    endpoint: Endpoint
    initiation: ConversationInitiationClientData
    settings: LinkSettings
    max_backlog: int  # frames waiting for the socket before audio is dropped
    sink: AudioSink
    tools: ToolRunner | None
    feed: Callable[[Event], None]  # the appliance's events go here, in order
    show: Callable[[Line | VadLevel], None]  # for people: transcript lines, the VAD level
    clock: Callable[[], float]


class Conversation:
    """One connection, from URL to close; see the module docstring."""

    def __init__(self, parts: Parts, source_rate: int) -> None:
        self._parts = parts
        self.source_rate = source_rate
        self.link: Link | None = None
        self._up: StreamResampler | None = None
        # The microphone's int16 frames are the wire's bytes as they are: PCM at its rate.
        self._up_as_is = False
        self._down: StreamResampler | None = None
        self._down_turn: int | None = None
        self._hang_up = asyncio.Event()
        self._drain = False
        self._reported_ending = False
        self._group: asyncio.TaskGroup | None = None
        self._tools: set[asyncio.Task[None]] = set()
        self.vad_score = 0.0

    # -- what the client asks of it -------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The session once the socket is open."""
        return self.link.session if self.link is not None else None

    @property
    def conversation_id(self) -> str | None:
        session = self.session
        return session.conversation_id if session is not None else None

    @property
    def dropped_frames(self) -> int:
        return self.link.dropped_frames if self.link is not None else 0

    @property
    def can_send_audio(self) -> bool:
        session = self.session
        return session is not None and session.can_send_audio and self._up is not None

    def live_session(self) -> Session | None:
        """The session when messages may be sent on it."""
        session = self.session
        if session is None or session.state is not SessionState.ACTIVE:
            return None
        return session

    def send(self, message: ClientMessage) -> None:
        """Send a message now (the appliance only asks while the conversation is up)."""
        session = self.live_session()
        if session is None:
            logger.warning("%s not sent: the conversation is not up", type(message).__name__)
            return
        session.send(message)
        self.flush()

    def send_audio(self, samples: Samples) -> None:
        """One microphone frame (int16 mono at ``source_rate``)."""
        link = self.link
        up = self._up
        if link is None or up is None:
            return
        session = link.session
        if not session.can_send_audio:
            return
        if self._up_as_is and samples.dtype is NATIVE_PCM16:
            link.send_audio(samples.tobytes())  # the usual 16 kHz microphone: 50 times a second
            return
        fmt = session.input_format
        if fmt is None:
            return
        # At the input format's rate already, int16 frames go as they are: a pass-through
        # resampler would only copy them.
        if up.design is not None or samples.dtype != np.int16:
            samples = cast(Samples, up.process(samples))
        link.send_audio(encode_audio(samples, fmt))

    def set_source_rate(self, rate: int) -> None:
        """The microphone's rate changed: resample from the new rate."""
        self.source_rate = rate
        session = self.session
        fmt = session.input_format if session is not None else None
        if self._up is not None and fmt is not None:
            self._set_up(StreamResampler(rate, fmt.sample_rate), fmt)

    def _set_up(self, up: StreamResampler, fmt: AudioFormat) -> None:
        self._up = up
        self._up_as_is = up.design is None and not fmt.is_ulaw

    def flush(self) -> None:
        if self.link is not None:
            self.link.flush()

    def silence(self, *, barge_in: bool) -> None:
        """The speaker was flushed: what was silenced leaves no tail; a barge-in also drops the
        rest of the agent's turn."""
        if self._down is not None:
            self._down.reset()
        session = self.session
        if barge_in and session is not None:
            session.drop_current_agent_turn()

    def hang_up(self, *, drain: bool) -> None:
        """Close (1000) as soon as the socket is open; with ``drain`` after queued audio."""
        self._drain = drain
        self._hang_up.set()

    # -- the connection -------------------------------------------------------------------------

    async def run(self) -> None:
        """Open, pump, close; reports ``ConnectionClosed`` last, however it ends."""
        try:
            ending = await self._converse()
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug, not the network: log it where it can be found, and carry on as after a
            # lost connection rather than leave the appliance deaf.
            logger.exception("conversation failed unexpectedly")
            ending = Ending(EndReason.CONNECTION_LOST, None, "internal error", False)
        self._parts.feed(ConnectionClosed(self._parts.clock(), ending))

    async def _converse(self) -> Ending:
        parts = self._parts
        try:
            url = await resolve_url(parts.endpoint, request_timeout=parts.settings.connect_timeout)
            ws = await open_socket(url, parts.settings)
        except ConnectFailed as exc:
            return exc.ending
        async with ws:
            session = Session(parts.initiation)
            session.initiate()
            self.link = Link(ws, session, max_backlog=parts.max_backlog)
            self.link.flush()
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._group = tasks
                    closer = tasks.create_task(self._close_on_request())
                    try:
                        ending = await self.link.run(self._handle)
                    finally:
                        closer.cancel()
                        for task in self._tools:
                            task.cancel()
            except asyncio.CancelledError:
                # The daemon is stopping: end the conversation properly (1000), not with the
                # error code the socket's context manager would use for an exception.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await ws.close(1000, "User ended conversation")
                raise
        return ending

    async def _close_on_request(self) -> None:
        await self._hang_up.wait()
        assert self.link is not None
        if self._drain:
            await self._parts.sink.wait_drained()
        session = self.link.session
        if session.state in (
            SessionState.INITIATING,
            SessionState.ACTIVE,
            SessionState.QUEUED,
            SessionState.ENDING,
        ):
            session.hang_up()
        await self.link.close(1000, "User ended conversation")

    def _handle(self, event: SessionEvent) -> None:
        """The one place event handling may fail: one bad event never ends the daemon."""
        try:
            self._on_event(event)
        except Exception:
            logger.exception("error handling server event %s", type(event).__name__)
        session = self.session
        ending = session is not None and session.state is SessionState.ENDING
        if ending and not self._reported_ending:
            self._reported_ending = True
            self._parts.feed(ServerEnding(self._parts.clock()))

    def _on_event(self, event: SessionEvent) -> None:
        parts = self._parts
        now = parts.clock()
        match event:
            case ConversationInitiationMetadata():
                self._on_started(event)
            case Audio(audio=data, event_id=turn, is_final=is_final):
                self._on_audio(data, turn, is_final)
            case Interruption():
                parts.feed(Interrupted(now))
            case AgentResponse(text=text, event_id=turn):
                logger.info("agent (turn %d): %s", turn, text)
                parts.show(Line("agent", text))
            case AgentResponseCorrection(corrected_agent_response=text):
                parts.show(Line("correction", text))
            case UserTranscript(text=text):
                logger.info("user: %s", text)
                parts.show(Line("user", text))
                parts.feed(UserHeard(now))
            case VadScore(vad_score=score):
                self.vad_score = score
                parts.show(VadLevel(score))
                if score >= 0.5:
                    parts.feed(VoiceActivity(now))
            case QueueStatus(status="waiting"):
                parts.feed(QueueWaiting(now))
            case QueueStatus(status="admitted"):
                parts.feed(QueueAdmitted(now))
            case QueueStatus(status="timed_out"):
                parts.feed(QueueTimedOut(now))
            case ClientToolCall():
                self._start_tool(event)
            case AgentToolResponse(tool_name="end_call"):
                logger.info("the agent ended the call")
            case ErrorEvent() | ClientErrorEvent() | FlatErrorEvent():
                logger.warning("server error event: %s", _describe_error(event))
            case Ping():
                pass
            case UnknownMessage(type=kind):
                logger.debug("unknown server event %r", kind)
            case ConversationEnded():
                self._play_tail()
            case _:
                logger.debug("server event %s", type(event).__name__)

    def _on_started(self, meta: ConversationInitiationMetadata) -> None:
        sink = self._parts.sink
        fmt = meta.user_input_audio_format
        self._set_up(StreamResampler(self.source_rate, fmt.sample_rate), fmt)
        self._down = StreamResampler(meta.agent_output_audio_format.sample_rate, sink.rate)
        logger.info(
            "conversation %s started (user audio %s, agent audio %s)",
            meta.conversation_id,
            meta.user_input_audio_format,
            meta.agent_output_audio_format,
            extra=journal_fields(conversation_id=meta.conversation_id),
        )
        self._parts.feed(ConversationStarted(self._parts.clock(), meta.conversation_id))
        self.flush()

    def _on_audio(self, data: bytes, turn: int, is_final: bool | None) -> None:
        session = self.session
        assert session is not None and self._down is not None
        fmt = session.output_format
        assert fmt is not None
        try:
            samples = decode_audio(data, fmt)
        except ValueError as exc:
            logger.warning("skipping agent audio chunk: %s", exc)
            return
        sink = self._parts.sink
        if turn != self._down_turn:
            # A server may never set is_final (it is optional): the previous turn then ends
            # here, and its last samples come first.
            self._play_tail()
            self._down_turn = turn
        # int16 in, int16 out: the resampler keeps the sample type. At the speaker's rate
        # already, the samples go as they are (a pass-through would only copy them).
        if self._down.design is not None:
            samples = cast(Samples, self._down.process(samples))
        sink.play(samples)
        if is_final:
            self._play_tail()
            sink.mark_end()
        self._parts.feed(AgentAudio(self._parts.clock(), turn))

    def _play_tail(self) -> None:
        """Play the agent turn's last samples, still inside the resampler's filter (up to
        5 ms), and start the next turn afresh. A flushed or reset resampler has none."""
        if self._down is not None and self._down.samples_in:
            tail = cast(Samples, self._down.flush())
            if len(tail):
                self._parts.sink.play(tail)

    def _start_tool(self, call: ClientToolCall) -> None:
        session = self.session
        assert session is not None
        if self._parts.tools is None:
            if call.expects_response:
                session.send_tool_result(
                    call.tool_call_id,
                    f"no client tools configured (asked for {call.tool_name})",
                    is_error=True,
                )
                self.flush()
            return
        assert self._group is not None
        task = self._group.create_task(self._run_tool(call))
        self._tools.add(task)
        task.add_done_callback(self._tools.discard)

    async def _run_tool(self, call: ClientToolCall) -> None:
        tools = self._parts.tools
        assert tools is not None
        self._parts.feed(VoiceActivity(self._parts.clock()))  # a tool at work is not idleness
        try:
            result = await tools.run(call)
        except Exception:
            logger.exception("client tool %s failed", call.tool_name)
            result = None
            if call.expects_response:
                result = ClientToolResult(call.tool_call_id, "internal error in the tool", True)
        session = self.session
        assert session is not None
        if result is not None and call.tool_call_id in session.pending_tool_calls:
            try:
                session.send(result)
            except PiagentError as exc:
                logger.warning("tool result for %s not sent: %s", call.tool_name, exc)
                return
            self.flush()
        self._parts.show(Line("tool", call.tool_name))


def _describe_error(event: ErrorEvent | ClientErrorEvent | FlatErrorEvent) -> str:
    if isinstance(event, ErrorEvent):
        return f"code {event.code} {event.error_type or ''} {event.message or event.reason or ''}"
    if isinstance(event, ClientErrorEvent):
        return f"code {event.code} {event.error_name} {event.message or ''}"
    return event.message
