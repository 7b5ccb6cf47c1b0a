"""Session: the sans-I/O state machine of one agent conversation (one WebSocket connection).

The I/O layer feeds it what arrives (``receive_text``, ``receive_close``), asks it to send
(``initiate``, ``send_audio``, ``send_user_message``, ...), and moves whatever it hands back
(``data_to_send`` frames out, ``events_received`` typed events up). The session does by itself
what the protocol asks of every client, so the I/O layer only moves bytes:

* the initiation message goes first; audio is refused until metadata has fixed the formats;
* every ``ping`` is answered with a ``pong`` of the same ``event_id`` (protocol.md §3.3);
* audio whose ``event_id`` is at or below the last interruption is dropped (protocol.md §5);
* pending client tool calls are tracked, and a result can only answer a pending call;
* agent turns are tracked by ``event_id`` (feedback targets the last one; a turn still
  streaming when the socket closes is reported as cut off);
* however the conversation ends, ``receive_close`` classifies it into an ``Ending``: a reason,
  and whether retrying can help (protocol.md §4.2, §7).

The state is one ``SessionState`` moved only through ``TRANSITIONS``; an illegal transition
raises ``LocalProtocolError`` and leaves the state unchanged.

Pure: no asyncio, websockets, pyaudio or gpiozero. Malformed server frames are logged, counted
and skipped: one bad message never ends a conversation.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from piagent.errors import LocalProtocolError, RemoteProtocolError
from piagent.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    Audio,
    AudioFormat,
    ClientErrorEvent,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    Feedback,
    FlatErrorEvent,
    Interruption,
    McpToolApprovalResult,
    Ping,
    Pong,
    ServerEvent,
    UnknownMessage,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    encode,
    parse_server,
)

logger = logging.getLogger(__name__)


class SessionState(enum.Enum):
    """Where one conversation stands."""

    IDLE = "idle"  # created; the initiation message is not yet sent
    INITIATING = "initiating"  # initiation sent; waiting for conversation_initiation_metadata
    ACTIVE = "active"  # metadata received: formats known, audio may flow both ways
    ENDING = "ending"  # the server announced the end; the agent's last words may still arrive
    CLOSING = "closing"  # we hung up and wait for the socket to close
    CLOSED = "closed"  # the socket is closed; ``Session.ending`` says how


class Trigger(enum.Enum):
    """What moves a session from one state to another."""

    INITIATE = "initiate"  # we sent conversation_initiation_client_data
    METADATA = "metadata"  # conversation_initiation_metadata arrived
    SERVER_ENDING = "server_ending"  # end_call, an error event, max duration
    HANG_UP = "hang_up"  # we decided to end the conversation
    CLOSED = "closed"  # the WebSocket closed, whoever closed it


S, T = SessionState, Trigger
TRANSITIONS: Mapping[tuple[SessionState, Trigger], SessionState] = {
    (S.IDLE, T.INITIATE): S.INITIATING,
    (S.IDLE, T.HANG_UP): S.CLOSING,
    (S.IDLE, T.CLOSED): S.CLOSED,
    (S.INITIATING, T.METADATA): S.ACTIVE,
    (S.INITIATING, T.SERVER_ENDING): S.ENDING,
    (S.INITIATING, T.HANG_UP): S.CLOSING,
    (S.INITIATING, T.CLOSED): S.CLOSED,
    (S.ACTIVE, T.SERVER_ENDING): S.ENDING,
    (S.ACTIVE, T.HANG_UP): S.CLOSING,
    (S.ACTIVE, T.CLOSED): S.CLOSED,
    (S.ENDING, T.HANG_UP): S.CLOSING,
    (S.ENDING, T.CLOSED): S.CLOSED,
    (S.CLOSING, T.CLOSED): S.CLOSED,
}
del S, T

# States in which client messages other than audio may be sent.
_CAN_SEND = frozenset({SessionState.ACTIVE, SessionState.ENDING})
# States in which server frames are still read.
_CAN_RECEIVE = frozenset(
    {SessionState.INITIATING, SessionState.ACTIVE, SessionState.ENDING, SessionState.CLOSING}
)


def state_diagram() -> str:
    """The transition table as a Mermaid state diagram (README.md shows it)."""
    lines = ["stateDiagram-v2", "    [*] --> idle"]
    for (source, trigger), target in TRANSITIONS.items():
        lines.append(f"    {source.value} --> {target.value}: {trigger.value}")
    lines.append("    closed --> [*]")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Endings


class EndReason(enum.Enum):
    """Why a conversation ended; ``retryable`` says whether a new connection could help."""

    CLIENT_HANGUP = "client hung up"
    AGENT_ENDED_CALL = "agent ended the call"
    MAX_DURATION = "maximum conversation duration reached"
    SERVER_CLOSED = "server closed the conversation"
    NO_INPUT_TIMEOUT = "no user input for too long"
    TIMEOUT = "server-side timeout"
    PROTOCOL_ERROR = "server reported an operational error"
    SERVER_ERROR = "internal server error"
    REQUEST_ERROR = "request error"
    SERVICE_UNAVAILABLE = "service unavailable"
    CONNECT_FAILED = "could not connect"
    STALLED = "connection stalled"
    CONNECTION_LOST = "connection lost"
    CLOSED_BEFORE_METADATA = "closed before the conversation started"
    QUOTA_EXCEEDED = "quota exceeded"
    OVERRIDE_REJECTED = "override not allowed by the agent"
    AUTH_REJECTED = "authentication rejected"
    AGENT_NOT_FOUND = "agent not found"
    MISSING_DYNAMIC_VARIABLE = "missing dynamic variable"
    INVALID_REQUEST = "request rejected as invalid"

    @property
    def retryable(self) -> bool:
        """True when the failure is transient: reconnecting later may succeed."""
        return self in _RETRYABLE

    @property
    def is_error(self) -> bool:
        """False for the ways a conversation ends normally."""
        return self not in _NORMAL

    @property
    def advice(self) -> str:
        """What the user can do about it, for the one log line a fatal failure gets."""
        return _ADVICE.get(self, "")


_NORMAL = frozenset(
    {
        EndReason.CLIENT_HANGUP,
        EndReason.AGENT_ENDED_CALL,
        EndReason.MAX_DURATION,
        EndReason.SERVER_CLOSED,
        EndReason.NO_INPUT_TIMEOUT,
    }
)
_RETRYABLE = frozenset(
    {
        EndReason.NO_INPUT_TIMEOUT,
        EndReason.TIMEOUT,
        EndReason.PROTOCOL_ERROR,
        EndReason.SERVER_ERROR,
        EndReason.REQUEST_ERROR,
        EndReason.SERVICE_UNAVAILABLE,
        EndReason.CONNECT_FAILED,
        EndReason.STALLED,
        EndReason.CONNECTION_LOST,
        EndReason.CLOSED_BEFORE_METADATA,
    }
)
_ADVICE: Mapping[EndReason, str] = {
    EndReason.QUOTA_EXCEEDED: "the ElevenLabs account is out of quota: check its plan and usage",
    EndReason.OVERRIDE_REJECTED: (
        "the agent does not allow an override piagent sends: enable it in the agent's Security "
        "settings or remove the key from the agent section of the config"
    ),
    EndReason.AUTH_REJECTED: (
        "the API key or signed URL was rejected: check agent.api_key_file or ELEVENLABS_API_KEY, "
        "and whether the agent is private"
    ),
    EndReason.AGENT_NOT_FOUND: "the agent does not exist: check agent.agent_id",
    EndReason.MISSING_DYNAMIC_VARIABLE: (
        "the agent's prompt uses a dynamic variable the config does not set: add it under "
        "agent.dynamic_variables"
    ),
    EndReason.INVALID_REQUEST: "the server rejected a message as invalid: see the close reason",
}

_ERROR_TYPE_REASONS: Mapping[str, EndReason] = {
    "max_duration_exceeded": EndReason.MAX_DURATION,
    "transport_receive_timeout": EndReason.NO_INPUT_TIMEOUT,
    "llm_timeout": EndReason.TIMEOUT,
    "asyncio_timeout": EndReason.TIMEOUT,
    "redis_timeout_error": EndReason.TIMEOUT,
    "override_error": EndReason.OVERRIDE_REJECTED,
    "missing_dynamic_variable": EndReason.MISSING_DYNAMIC_VARIABLE,
    "missing_dynamic_variable_transfer": EndReason.MISSING_DYNAMIC_VARIABLE,
    "invalid_message": EndReason.INVALID_REQUEST,
    "value_error": EndReason.INVALID_REQUEST,
    "missing_fields": EndReason.INVALID_REQUEST,
    "unknown_websocket_crash": EndReason.SERVER_ERROR,
}

# Close reasons are free text; these fragments are what real closes have said (protocol.md §7).
_TEXT_REASONS: tuple[tuple[str, EndReason], ...] = (
    ("quota", EndReason.QUOTA_EXCEEDED),
    ("override for field", EndReason.OVERRIDE_REJECTED),
    ("agent not found", EndReason.AGENT_NOT_FOUND),
    ("invalid agent", EndReason.AGENT_NOT_FOUND),
    ("does not exist", EndReason.AGENT_NOT_FOUND),
    ("signature", EndReason.AUTH_REJECTED),
    ("authenticat", EndReason.AUTH_REJECTED),
    ("unauthori", EndReason.AUTH_REJECTED),
    ("api key", EndReason.AUTH_REJECTED),
    ("dynamic variable", EndReason.MISSING_DYNAMIC_VARIABLE),
)

_CODE_REASONS: Mapping[int, EndReason] = {
    1000: EndReason.SERVER_CLOSED,
    1001: EndReason.CONNECTION_LOST,
    1002: EndReason.PROTOCOL_ERROR,
    1006: EndReason.CONNECTION_LOST,
    1008: EndReason.INVALID_REQUEST,
    1011: EndReason.SERVER_ERROR,
    3000: EndReason.REQUEST_ERROR,
}


@dataclass(frozen=True, slots=True)
class Ending:
    """How a conversation ended.

    ``code`` and ``detail`` are the close frame's (``None``/"" when the connection dropped with
    none); ``cut_turn`` is the event id of an agent turn that was still streaming."""

    reason: EndReason
    code: int | None
    detail: str
    before_metadata: bool = False
    cut_turn: int | None = None

    @property
    def retryable(self) -> bool:
        """Whether reconnecting can help (transient), as opposed to a fatal or normal end."""
        return self.reason.retryable

    def describe(self) -> str:
        """One human line: reason, close code and the server's words."""
        parts = [self.reason.value]
        if self.code is not None:
            parts.append(f"code {self.code}")
        if self.detail:
            parts.append(repr(self.detail))
        return ", ".join(parts)


ServerErrorEvent: TypeAlias = ErrorEvent | ClientErrorEvent | FlatErrorEvent


def classify_ending(
    code: int | None,
    detail: str = "",
    *,
    error: ServerErrorEvent | None = None,
    end_call: bool = False,
    hung_up: bool = False,
    before_metadata: bool = False,
    cut_turn: int | None = None,
) -> Ending:
    """Map a close (code, reason text), with what preceded it, to an ``Ending``.

    The most specific evidence wins: our own hang-up, then the error event's ``error_type``, then
    words in the close reason or error message, then the close code."""
    reason = _classify(code, detail, error, end_call, hung_up)
    if before_metadata and reason in (EndReason.SERVER_CLOSED, EndReason.CONNECTION_LOST):
        reason = EndReason.CLOSED_BEFORE_METADATA
    return Ending(reason, code, detail, before_metadata, cut_turn)


def _classify(
    code: int | None,
    detail: str,
    error: ServerErrorEvent | None,
    end_call: bool,
    hung_up: bool,
) -> EndReason:
    if hung_up and code in (None, 1000):
        return EndReason.CLIENT_HANGUP
    error_type = error.error_type if isinstance(error, ErrorEvent) else None
    if error_type is not None and error_type in _ERROR_TYPE_REASONS:
        return _ERROR_TYPE_REASONS[error_type]
    words = " ".join(filter(None, [detail, _error_text(error)])).lower()
    for fragment, reason in _TEXT_REASONS:
        if fragment in words:
            return reason
    if code == 1000 and end_call:
        return EndReason.AGENT_ENDED_CALL
    if code is None:
        return EndReason.CONNECTION_LOST
    return _CODE_REASONS.get(code, EndReason.PROTOCOL_ERROR)


def _error_text(error: ServerErrorEvent | None) -> str:
    if error is None:
        return ""
    if isinstance(error, ErrorEvent):
        return " ".join(filter(None, [error.message, error.reason]))
    if isinstance(error, ClientErrorEvent):
        return " ".join(filter(None, [error.error_name, error.message]))
    return error.message


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    """Emitted once, when the socket has closed: how the conversation ended."""

    ending: Ending


SessionEvent: TypeAlias = ServerEvent | ConversationEnded


@dataclass(slots=True)
class SessionStats:
    """Counters of what the session dropped or skipped, for status and logs."""

    stale_audio_chunks: int = 0  # audio of an interrupted turn, dropped
    early_audio_chunks: int = 0  # audio before metadata (format unknown), dropped
    malformed_messages: int = 0
    unknown_messages: int = 0
    pings_answered: int = 0


# --------------------------------------------------------------------------------------------
# The session


@dataclass(slots=True)
class _Turns:
    """Turn bookkeeping by event_id (protocol.md §5)."""

    last_agent_turn: int | None = None  # newest agent turn seen (feedback targets it)
    streaming_turn: int | None = None  # agent turn whose audio is still arriving
    last_interruption: int | None = None  # audio at or below this id is stale
    last_user_turn: int | None = None
    pending_tools: dict[str, ClientToolCall] = field(default_factory=dict)


class Session:
    """One conversation's protocol state. Not thread-safe: use it from one task."""

    def __init__(self, initiation: ConversationInitiationClientData | None = None) -> None:
        self._initiation = initiation or ConversationInitiationClientData()
        self._state = SessionState.IDLE
        self._outgoing: list[str] = []
        self._events: list[SessionEvent] = []
        self._turns = _Turns()
        self._metadata: ConversationInitiationMetadata | None = None
        self._error: ServerErrorEvent | None = None
        self._end_call = False
        self._hung_up = False
        self._ending: Ending | None = None
        self.last_ping_ms: int | None = None
        self.stats = SessionStats()

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The current state."""
        return self._state

    def _transition(self, trigger: Trigger) -> None:
        target = TRANSITIONS.get((self._state, trigger))
        if target is None:
            raise LocalProtocolError(f"cannot {trigger.value} in state {self._state.value}")
        logger.debug("session %s --%s--> %s", self._state.value, trigger.value, target.value)
        self._state = target

    @property
    def conversation_id(self) -> str | None:
        """The server's id for this conversation, once metadata has arrived."""
        return self._metadata.conversation_id if self._metadata else None

    @property
    def input_format(self) -> AudioFormat | None:
        """The format user audio must be sent in (None before metadata)."""
        return self._metadata.user_input_audio_format if self._metadata else None

    @property
    def output_format(self) -> AudioFormat | None:
        """The format of the agent's audio (None before metadata)."""
        return self._metadata.agent_output_audio_format if self._metadata else None

    @property
    def can_send_audio(self) -> bool:
        """True once metadata has named the formats, until the conversation starts ending."""
        return self._state is SessionState.ACTIVE

    @property
    def last_agent_turn(self) -> int | None:
        """Event id of the newest agent turn (the target of feedback)."""
        return self._turns.last_agent_turn

    @property
    def last_interruption(self) -> int | None:
        """Event id of the last interruption; agent audio at or below it is dropped."""
        return self._turns.last_interruption

    @property
    def pending_tool_calls(self) -> Mapping[str, ClientToolCall]:
        """Client tool calls awaiting a result, by tool_call_id."""
        return dict(self._turns.pending_tools)

    @property
    def ending(self) -> Ending | None:
        """How the conversation ended, once closed."""
        return self._ending

    # -- I/O-facing --------------------------------------------------------------------------

    def data_to_send(self) -> list[str]:
        """Text frames to send, in order; each call hands them over once."""
        out, self._outgoing = self._outgoing, []
        return out

    def events_received(self) -> list[SessionEvent]:
        """Events for the application, in order; each call hands them over once."""
        out, self._events = self._events, []
        return out

    def initiate(self) -> None:
        """Queue ``conversation_initiation_client_data``: the first frame on a new socket."""
        self._transition(Trigger.INITIATE)
        self._outgoing.append(encode(self._initiation))

    def receive_text(self, text: str | bytes) -> None:
        """Process one text frame from the server."""
        if self._state not in _CAN_RECEIVE:
            raise LocalProtocolError(f"cannot receive in state {self._state.value}")
        try:
            event = parse_server(text)
        except RemoteProtocolError as exc:
            self.stats.malformed_messages += 1
            logger.warning("skipping malformed server message: %s", exc)
            return
        if self._accept(event):
            self._events.append(event)

    def receive_close(
        self, code: int | None, reason: str = "", *, lost: EndReason | None = None
    ) -> None:
        """The socket closed (``code`` None when no close frame was received).

        ``lost`` names what the I/O layer saw when the connection died without a close frame
        (``STALLED`` after unanswered WebSocket pings, for instance). Emits
        ``ConversationEnded`` once; later calls do nothing."""
        if self._state is SessionState.CLOSED:
            return
        before_metadata = self._metadata is None
        self._transition(Trigger.CLOSED)
        ending = classify_ending(
            code,
            reason,
            error=self._error,
            end_call=self._end_call,
            hung_up=self._hung_up,
            before_metadata=before_metadata,
            cut_turn=self._turns.streaming_turn,
        )
        if code is None and lost is not None and ending.reason is EndReason.CONNECTION_LOST:
            ending = Ending(lost, None, reason, before_metadata, ending.cut_turn)
        self._ending = ending
        self._turns.pending_tools.clear()
        self._events.append(ConversationEnded(self._ending))

    def drop_current_agent_turn(self) -> None:
        """Drop the rest of the agent's current turn, as an interruption would.

        For a barge-in the client detects first (a button press, a typed message): the server's
        own ``interruption`` may follow later, and audio of the old turn arriving before it
        must not play."""
        turn, last = self._turns.last_agent_turn, self._turns.last_interruption
        if turn is not None and (last is None or turn > last):
            self._turns.last_interruption = turn
        self._turns.streaming_turn = None

    def hang_up(self) -> None:
        """We end the conversation; the I/O layer then closes the socket with 1000."""
        self._hung_up = True
        self._transition(Trigger.HANG_UP)

    # -- sending -----------------------------------------------------------------------------

    def send_audio(self, audio: bytes) -> None:
        """Queue one chunk of user audio, already in ``input_format``."""
        if not self.can_send_audio:
            raise LocalProtocolError(f"cannot send audio in state {self._state.value}")
        fmt = self.input_format
        if fmt is not None and len(audio) % fmt.bytes_per_sample:
            raise LocalProtocolError(f"audio chunk of {len(audio)} bytes splits a {fmt} sample")
        self._outgoing.append(encode(UserAudioChunk(audio)))

    def send(self, message: ClientMessage) -> None:
        """Queue any client message, checked against the state and pending tool calls."""
        match message:
            case UserAudioChunk(audio=audio):
                self.send_audio(audio)
                return
            case ConversationInitiationClientData():
                raise LocalProtocolError("the initiation message is sent by initiate()")
            case ClientToolResult(tool_call_id=call_id):
                self._check_can_send(message)
                if call_id not in self._turns.pending_tools:
                    raise LocalProtocolError(f"no pending client tool call {call_id!r}")
                del self._turns.pending_tools[call_id]
            case _:
                self._check_can_send(message)
        self._outgoing.append(encode(message))

    def _check_can_send(self, message: ClientMessage) -> None:
        if self._state not in _CAN_SEND:
            kind = type(message).__name__
            raise LocalProtocolError(f"cannot send {kind} in state {self._state.value}")

    def send_user_message(self, text: str) -> None:
        """Typed text, treated as if spoken; it interrupts the agent."""
        self.send(UserMessage(text))

    def send_contextual_update(self, text: str, context_id: str | None = None) -> None:
        """A background fact for the agent; no reply expected."""
        self.send(ContextualUpdate(text, context_id))

    def send_user_activity(self) -> None:
        """Tell the server the user is present."""
        self.send(UserActivity())

    def send_feedback(self, score: str | None) -> None:
        """Rate the last agent turn: ``like``, ``dislike`` or ``None`` to clear."""
        turn = self._turns.last_agent_turn
        if turn is None:
            raise LocalProtocolError("no agent turn to give feedback on yet")
        self.send(Feedback(score, turn))

    def send_tool_result(self, tool_call_id: str, result: str, *, is_error: bool = False) -> None:
        """Answer a pending client tool call."""
        self.send(ClientToolResult(tool_call_id, result, is_error))

    def send_mcp_approval(self, tool_call_id: str, *, approved: bool) -> None:
        """Approve or reject an MCP tool call awaiting approval."""
        self.send(McpToolApprovalResult(tool_call_id, approved))

    # -- receiving ---------------------------------------------------------------------------

    def _accept(self, event: ServerEvent) -> bool:
        """Apply one server event to the state; False when it is not passed on."""
        turns = self._turns
        match event:
            case Ping(event_id=event_id, ping_ms=ping_ms):
                if self._state is not SessionState.CLOSING:
                    self._outgoing.append(encode(Pong(event_id)))
                    self.stats.pings_answered += 1
                if ping_ms is not None:
                    self.last_ping_ms = ping_ms
            case ConversationInitiationMetadata():
                if self._state is not SessionState.INITIATING:
                    logger.warning("ignoring conversation metadata in state %s", self._state.value)
                    return False
                self._metadata = event
                self._transition(Trigger.METADATA)
            case Audio(event_id=event_id, is_final=is_final):
                return self._accept_audio(event_id, is_final)
            case AgentResponse(event_id=event_id) | AgentChatResponsePart(event_id=event_id):
                self._note_agent_turn(event_id)
            case AgentResponseComplete(event_id=event_id):
                if turns.streaming_turn == event_id:
                    turns.streaming_turn = None
            case Interruption(event_id=event_id):
                interrupted = event_id if event_id is not None else turns.last_agent_turn
                if interrupted is not None:
                    previous = turns.last_interruption
                    turns.last_interruption = (
                        interrupted if previous is None else max(previous, interrupted)
                    )
                turns.streaming_turn = None
            case UserTranscript(event_id=event_id):
                turns.last_user_turn = event_id
            case ClientToolCall(tool_call_id=call_id, expects_response=expects):
                if expects:
                    turns.pending_tools[call_id] = event
            case (
                AgentToolResponse(tool_name="end_call")
                | AgentToolResponseFullPayload(tool_name="end_call")
            ):
                self._end_call = True
                self._begin_ending()
            case ErrorEvent() | ClientErrorEvent() | FlatErrorEvent():
                self._error = event
                self._begin_ending()
            case UnknownMessage(type=kind):
                self.stats.unknown_messages += 1
                logger.info("ignoring unknown server message type %r", kind)
            case _:
                pass
        return True

    def _accept_audio(self, event_id: int, is_final: bool) -> bool:
        turns = self._turns
        if self._metadata is None:
            self.stats.early_audio_chunks += 1
            logger.warning("dropping agent audio received before metadata")
            return False
        if turns.last_interruption is not None and event_id <= turns.last_interruption:
            self.stats.stale_audio_chunks += 1
            return False
        self._note_agent_turn(event_id)
        turns.streaming_turn = None if is_final else event_id
        return True

    def _note_agent_turn(self, event_id: int) -> None:
        last = self._turns.last_agent_turn
        if last is None or event_id > last:
            self._turns.last_agent_turn = event_id

    def _begin_ending(self) -> None:
        if self._state in (SessionState.INITIATING, SessionState.ACTIVE):
            self._transition(Trigger.SERVER_ENDING)


__all__ = [
    "TRANSITIONS",
    "ConversationEnded",
    "EndReason",
    "Ending",
    "Session",
    "SessionEvent",
    "SessionState",
    "SessionStats",
    "Trigger",
    "classify_ending",
    "state_diagram",
]


if __name__ == "__main__":
    print(state_diagram())
